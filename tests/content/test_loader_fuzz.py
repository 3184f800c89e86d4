"""Whatever a content file holds, loading it reports problems and never crashes."""

from __future__ import annotations

import string
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from prepbot.content import loader
from prepbot.content.loader import load_packs
from tests.conftest import VALID_SCENARIO, scenario_data
from tests.fuzzing import fuzz_cases

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(string.ascii_lowercase, max_size=8), children, max_size=4)
    ),
    max_leaves=10,
)


@pytest.fixture(scope="module", autouse=True)
def fast_loading() -> Iterator[None]:
    """Make each case cheap without changing what is checked.

    Two costs dominated a case (~20 ms): a fresh temporary folder (made and removed), and
    parsing the built-in topic vocabulary again. The cases share one folder, rewriting the
    file; the vocabulary's outcome (its topics, no problems) is parsed once and replayed into
    each report exactly as the loader would have put it there: first, into an empty report.
    """
    real = loader._read_topics
    builtin = loader.builtin_pack_path() / loader.TOPICS_FILE
    once = loader.PackReport()
    real(builtin, once, required=True)

    def read_topics(path: Path, report: loader.PackReport, *, required: bool) -> None:
        if path != builtin:
            real(path, report, required=required)
            return
        assert not report.topics
        assert not report.problems
        report.topics.update(once.topics)
        report.problems.extend(once.problems)

    with tempfile.TemporaryDirectory() as folder, pytest.MonkeyPatch.context() as patch:
        patch.setattr(loader, "_read_topics", read_topics)
        FOLDER.append(Path(folder))
        yield
        FOLDER.clear()


FOLDER: list[Path] = []
DUMPER: type[yaml.SafeDumper] = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
VALID_TEXT = yaml.safe_dump(scenario_data(), sort_keys=False)


def _check(text: str) -> None:
    path = FOLDER[0] / "sample-scenario.yaml"
    path.write_text(text, encoding="utf-8")
    report = load_packs([FOLDER[0]])
    assert report.ok == (len(report.scenarios) == 1)
    for problem in report.problems:
        # Clear: the file, the line when there is one, the field when one is at fault, and a
        # message that says what is wrong, the way `prepbot content check` prints it.
        assert problem.path == path
        assert problem.message.strip()
        assert "Traceback" not in problem.message
        assert problem.line is None or problem.line >= 1
        where = f"{path}:{problem.line}" if problem.line is not None else str(path)
        assert str(problem).startswith(where + ": ")
        if problem.field:
            assert str(problem) == f"{where}: {problem.field}: {problem.message}"


@pytest.mark.slow(seconds=140)
@settings(max_examples=fuzz_cases(300), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(field=st.sampled_from(sorted(VALID_SCENARIO)), value=json_values)
def test_any_value_in_any_field_is_reported_not_raised(field: str, value: Any):
    _check(yaml.dump(scenario_data(**{field: value}) if value is not None else {}, Dumper=DUMPER))


@pytest.mark.slow(seconds=55)
@settings(max_examples=fuzz_cases(300), deadline=None)
@given(text=st.text(alphabet=st.characters(codec="utf-8"), max_size=200))
def test_arbitrary_text_is_reported_not_raised(text: str):
    _check(text)


@settings(max_examples=fuzz_cases(200), deadline=None)
@given(
    cut=st.integers(min_value=0, max_value=2000), junk=st.sampled_from(list(":-[]{}\"'&*!|>%@`\t"))
)
@pytest.mark.slow(seconds=65)
def test_a_damaged_valid_file_is_reported_not_raised(cut: int, junk: str):
    text = VALID_TEXT
    cut = min(cut, len(text))
    _check(text[:cut] + junk + text[cut:])
