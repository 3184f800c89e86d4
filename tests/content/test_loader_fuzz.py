"""Whatever a content file holds, loading it reports problems and never crashes."""

from __future__ import annotations

import string
import tempfile
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from prepbot.content.loader import load_packs
from tests.conftest import VALID_SCENARIO, scenario_data

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(string.ascii_lowercase, max_size=8), children, max_size=4)
    ),
    max_leaves=10,
)


def _check(text: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "sample-scenario.yaml"
        path.write_text(text, encoding="utf-8")
        report = load_packs([Path(folder)])
    assert report.ok == (len(report.scenarios) == 1)
    for problem in report.problems:
        assert problem.path == path
        assert problem.message.strip()
        assert problem.line is None or problem.line >= 1


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(field=st.sampled_from(sorted(VALID_SCENARIO)), value=json_values)
def test_any_value_in_any_field_is_reported_not_raised(field: str, value: Any):
    _check(yaml.safe_dump(scenario_data(**{field: value}) if value is not None else {}))


@settings(max_examples=300, deadline=None)
@given(text=st.text(alphabet=st.characters(codec="utf-8"), max_size=200))
def test_arbitrary_text_is_reported_not_raised(text: str):
    _check(text)


@settings(max_examples=200, deadline=None)
@given(
    cut=st.integers(min_value=0, max_value=2000), junk=st.sampled_from(list(":-[]{}\"'&*!|>%@`\t"))
)
def test_a_damaged_valid_file_is_reported_not_raised(cut: int, junk: str):
    text = yaml.safe_dump(scenario_data(), sort_keys=False)
    cut = min(cut, len(text))
    _check(text[:cut] + junk + text[cut:])
