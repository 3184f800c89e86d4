"""``prepbot content grade``: an author tries an answer against a scenario's rubric."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from prepbot.cli import app
from tests.conftest import BUILTIN_PACK

runner = CliRunner()
pytestmark = pytest.mark.usefixtures("isolated_settings")

SCENARIO = "google-gradient-sync-1000-gpus"
RUBRIC = {
    "key_points": [
        {"id": "all-reduce", "point": "It is an all-reduce.", "look_for": ["all-reduce"]},
        {"id": "ring", "point": "Ring all-reduce.", "look_for": ["ring all-reduce"]},
        {
            "id": "phases",
            "point": "Reduce-scatter, then all-gather.",
            "look_for": ["reduce-scatter", "all-gather"],
        },
    ],
    "red_flags": [
        {"id": "parameter-server", "flag": "A central server.", "look_for": ["parameter server"]}
    ],
}


@pytest.fixture
def pack(tmp_path: Path) -> Path:
    """Return a pack with the gradient-sync scenario, given a rubric, and one without a rubric."""
    folder = tmp_path / "team-pack"
    folder.mkdir()
    shutil.copy(BUILTIN_PACK / "topics.yaml", folder / "topics.yaml")
    data = yaml.safe_load((BUILTIN_PACK / "scenarios" / f"{SCENARIO}.yaml").read_text())
    data["rubric"] = RUBRIC
    (folder / f"{SCENARIO}.yaml").write_text(yaml.safe_dump(data), encoding="utf-8")
    data.pop("rubric")
    data["id"] = "no-rubric-yet"
    (folder / "no-rubric-yet.yaml").write_text(yaml.safe_dump(data), encoding="utf-8")
    return folder


def grade(pack: Path, scenario: str, answer: str) -> tuple[int, str, str]:
    result = runner.invoke(app, ["content", "grade", scenario, "--pack", str(pack)], input=answer)
    return result.exit_code, result.stdout, result.stderr


def test_grade_prints_the_covered_points_missed_points_and_red_flags_as_json(pack: Path):
    code, out, _ = grade(pack, SCENARIO, "Put a parameter server in front. Ring All-Reduce too.")
    assert code == 0
    assert json.loads(out) == {
        "scenario": SCENARIO,
        "covered": ["all-reduce", "ring"],
        "missed": ["phases"],
        "red_flags": ["parameter-server"],
        "matched": {
            "all-reduce": ["All-Reduce"],
            "ring": ["Ring All-Reduce"],
            "parameter-server": ["parameter server"],
        },
        "stuffed": False,
    }


def test_grade_reports_a_negated_red_flag_as_not_raised(pack: Path):
    code, out, _ = grade(pack, SCENARIO, "I would not use a parameter server, but ring all-reduce.")
    assert code == 0
    assert json.loads(out)["red_flags"] == []


def test_grade_reports_a_bare_list_as_stuffed(pack: Path):
    code, out, _ = grade(pack, SCENARIO, "ring all-reduce, reduce-scatter, all-gather, NCCL, ZeRO")
    assert code == 0
    assert json.loads(out) == {
        "scenario": SCENARIO,
        "covered": [],
        "missed": ["all-reduce", "ring", "phases"],
        "red_flags": [],
        "matched": {},
        "stuffed": True,
    }


def test_grade_forgives_the_case_of_the_id(pack: Path):
    code, out, _ = grade(pack, SCENARIO.upper(), "all-reduce")
    assert code == 0
    assert json.loads(out)["scenario"] == SCENARIO


def test_an_unknown_id_exits_1_and_suggests_close_ids(pack: Path):
    code, out, err = grade(pack, "google-gradient-sync", "all-reduce")
    assert code == 1
    assert out == ""
    assert err.strip() == (
        f"error: no scenario with id 'google-gradient-sync'. Did you mean: {SCENARIO}?"
    )


def test_a_scenario_without_a_rubric_exits_1_and_says_where_to_add_it(pack: Path):
    code, _, err = grade(pack, "no-rubric-yet", "all-reduce")
    assert code == 1
    assert "scenario 'no-rubric-yet' has no rubric" in err
    assert str(pack / "no-rubric-yet.yaml") in err


def test_an_empty_answer_exits_1(pack: Path):
    code, _, err = grade(pack, SCENARIO, "  \n")
    assert code == 1
    assert "no answer on standard input" in err


def test_a_pack_with_problems_is_refused(pack: Path):
    (pack / "broken.yaml").write_text("id: broken\ntitle: [oops\n", encoding="utf-8")
    code, _, err = grade(pack, SCENARIO, "all-reduce")
    assert code == 2
    assert "invalid YAML" in err
    assert "problems in the given content packs" in err
