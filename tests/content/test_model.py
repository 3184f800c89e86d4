"""The scenario model accepts what a content file should say and names what is wrong."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from prepbot.content.model import Kind, Scenario, slugify
from tests.conftest import scenario_data


def errors_of(data: dict[str, object]) -> dict[str, str]:
    with pytest.raises(ValidationError) as caught:
        Scenario.model_validate(data)
    return {".".join(map(str, e["loc"])): e["msg"] for e in caught.value.errors()}


def test_a_complete_scenario_is_valid_and_frozen():
    scenario = Scenario.model_validate(scenario_data())
    assert scenario.kind is Kind.TECHNICAL
    assert scenario.prompts == ("Which model do you choose?",)
    with pytest.raises(ValidationError):
        scenario.title = "changed"  # type: ignore[misc]


def test_unknown_keys_are_rejected_at_every_level():
    data = scenario_data(sourse="x")
    data["context"]["compnay"] = "typo"
    errors = errors_of(data)
    assert "sourse" in errors
    assert "context.compnay" in errors


def test_a_scenario_needs_two_insights():
    errors = errors_of(scenario_data(insights=["only one"]))
    assert "at least 2" in errors["insights"]


def test_blank_prompts_are_rejected():
    errors = errors_of(scenario_data(prompts=["   "]))
    assert "prompts.0" in errors


def test_only_behavioral_scenarios_may_skip_the_trap():
    assert "trap" in errors_of(scenario_data(trap=None))
    behavioral = Scenario.model_validate(scenario_data(trap=None, kind="behavioral"))
    assert behavioral.trap is None


def test_draft_placeholders_are_not_content():
    errors = errors_of(scenario_data(title="TODO write a title"))
    assert "draft placeholder" in errors["title"]


@pytest.mark.parametrize("bad_id", ["Has-Caps", "double--dash", "trailing-", "spa ce", ""])
def test_ids_are_slugs(bad_id):
    assert "id" in errors_of(scenario_data(id=bad_id))


def test_a_topic_listed_twice_is_an_error():
    assert "topics" in errors_of(scenario_data(topics=["llm", "llm"]))


def test_slugify_makes_valid_ids():
    assert slugify("Model Calibration (Apple Scenario)") == "model-calibration-apple-scenario"
    assert slugify("!!!") == "scenario"
    assert len(slugify("word " * 40)) <= 60
