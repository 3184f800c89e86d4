"""The rubric-grader benchmark scores a labelled set correctly and refuses what it cannot use."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from benchmarks import grader as bench

from prepbot.content.model import Rubric
from prepbot.core.grading import grade
from tests.conftest import BUILTIN_PACK

RUBRIC = Rubric.model_validate(
    {
        "key_points": [
            {"id": "all-reduce", "point": "All-reduce.", "look_for": ["all-reduce"]},
            {"id": "ring", "point": "Ring.", "look_for": ["ring all-reduce"]},
            {"id": "nccl", "point": "NCCL.", "look_for": ["NCCL"]},
        ],
        "red_flags": [{"id": "ps", "flag": "PS.", "look_for": ["parameter server"]}],
    }
)
SCENARIO = "google-gradient-sync-1000-gpus"


def case(text: str, points: list[str], style: str, flags: list[str] | None = None):
    return bench.Labelled(
        Path("set.yaml"), 0, SCENARIO, text, frozenset(points), frozenset(flags or []), style
    )


def test_scores_are_micro_averaged_over_answer_and_point_pairs():
    cases = [
        case("Use ring all-reduce, run by NCCL.", ["all-reduce", "ring", "nccl"], "short"),
        case("Use an all-reduce.", ["all-reduce", "ring"], "partial"),  # ring missed
        case("Use a parameter server with NCCL.", [], "wrong", ["ps"]),  # nccl extra
        case("ring all-reduce, NCCL, parameter server, ZeRO", [], "stuffed"),
    ]
    scores = bench.score(cases, [grade(c.text, RUBRIC) for c in cases])
    assert (scores.points.tp, scores.points.fp, scores.points.fn) == (4, 1, 1)
    assert scores.points.precision == pytest.approx(0.8)
    assert scores.points.recall == pytest.approx(0.8)
    assert scores.points.f1 == pytest.approx(0.8)
    assert (scores.flags.tp, scores.flags.fp, scores.flags.fn) == (1, 0, 0)
    assert scores.by_style["short"].f1 == 1.0
    assert scores.by_style["partial"].recall == 0.5
    assert scores.by_style["stuffed"].f1 is None  # nothing labelled, nothing credited
    assert scores.by_scenario[SCENARIO].answers == 4
    assert [c.style for c, _ in scores.misses] == ["partial", "wrong"]
    assert (
        bench.failures(scores)
        == [
            "overall F1 0.800 is below 0.85",
            f"{SCENARIO}: F1 0.80 is below 0.7".replace("is below 0.7", "is below 0.7"),
        ][:1]
    )


def test_a_scenario_below_its_floor_is_named():
    scores = bench.Scores()
    scores.points = bench.Counts(tp=90, fp=5, fn=5)
    scores.by_scenario = {"good": bench.Counts(tp=89, fp=1), "bad": bench.Counts(tp=1, fp=4, fn=4)}
    assert bench.failures(scores) == ["bad: F1 0.200 is below 0.7"]


def test_the_set_is_read_and_its_mistakes_are_reported(tmp_path: Path):
    (tmp_path / "one.yaml").write_text(
        yaml.safe_dump(
            {
                "scenario": SCENARIO,
                "answers": [
                    {"text": "Ring all-reduce.", "points": ["ring"], "style": "short"},
                    {"text": "x", "style": "clever"},
                    {"text": "NCCL", "points": ["nccl", "unknown"], "style": "short"},
                ],
            }
        )
    )
    (tmp_path / "two.yaml").write_text("answers: []\n")
    cases, problems = bench.load_cases(tmp_path)
    assert [c.text for c in cases] == ["Ring all-reduce.", "NCCL"]
    assert problems == [
        "one.yaml: answers[1]: style 'clever' is not one of "
        "short, long, wrong, partial, paraphrase, negated, stuffed, typo",
        "two.yaml: must be a mapping of exactly 'scenario' and 'answers'",
    ]
    assert bench.check_against(cases, {SCENARIO: RUBRIC}) == [
        "one.yaml: answers[2]: ids not in the rubric: unknown"
    ]
    assert bench.check_against(cases[:1], {SCENARIO: None}) == [
        f"one.yaml: answers[0]: scenario '{SCENARIO}' has no rubric"
    ]


def test_without_labelled_answers_it_says_so_and_exits_2(tmp_path: Path, capsys):
    assert bench.main(["--answers-dir", str(tmp_path)]) == 2
    assert "no labelled answers" in capsys.readouterr().err


def test_a_full_run_writes_only_its_own_section(tmp_path: Path):
    pack = tmp_path / "pack"
    pack.mkdir()
    shutil.copy(BUILTIN_PACK / "topics.yaml", pack / "topics.yaml")
    data = yaml.safe_load((BUILTIN_PACK / "scenarios" / f"{SCENARIO}.yaml").read_text())
    data["rubric"] = RUBRIC.model_dump()
    (pack / f"{SCENARIO}.yaml").write_text(yaml.safe_dump(data))
    answers = tmp_path / "answers"
    answers.mkdir()
    (answers / f"{SCENARIO}.yaml").write_text(
        yaml.safe_dump(
            {
                "scenario": SCENARIO,
                "answers": [
                    {
                        "text": "I would use ring all-reduce, which NCCL implements well.",
                        "points": ["all-reduce", "ring", "nccl"],
                        "style": "long",
                    },
                    {"text": "A parameter server.", "red_flags": ["ps"], "style": "wrong"},
                ],
            }
        )
    )
    results = tmp_path / "benchmarks.md"
    results.write_text("# Benchmarks\n\n## Other\n\nkept\n")
    arguments = ["--answers-dir", str(answers), "--pack", str(pack), "--count", "50"]
    code = bench.main([*arguments, "--write", str(results)])
    assert code == 0
    text = results.read_text()
    assert "## Other\n\nkept\n" in text
    assert "## Rubric grader" in text
    assert "| all answers | 2 | 3 | 1.00 | 1.00 | 1.00 | ≥ 0.85 | yes |" in text


@pytest.mark.parametrize("folder", ["answers", "unseen"])
def test_the_built_in_rubrics_keep_the_grader_above_its_floors_on_the_labelled_sets(folder: str):
    """A look_for edit that breaks recognition (or credits everything) fails here, not in use.

    ``answers`` is the set the terms were tuned on; ``unseen`` was written after tuning and is
    never tuned on. Quality, not speed: deterministic, so it belongs in the tests.
    """
    from prepbot.content.loader import load_packs

    cases, problems = bench.load_cases(bench.ANSWERS.parent / folder)
    assert problems == []
    assert len(cases) >= 150
    report = load_packs([BUILTIN_PACK])
    rubrics = {s.scenario.id: s.scenario.rubric for s in report.scenarios}
    assert bench.check_against(cases, rubrics) == []
    graded = [grade(c.text, rubrics[c.scenario]) for c in cases]  # type: ignore[arg-type]
    assert bench.failures(bench.score(cases, graded)) == []
