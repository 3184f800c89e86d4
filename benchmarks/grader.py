"""Rubric-grader benchmark: agreement with labelled answers, and the time to grade a round.

Run: python3 benchmarks/grader.py [--answers-dir DIR] [--pack PATH ...] [--count 10000]
       [--show-misses] [--write docs/benchmarks.md]
Reads the labelled answers in benchmarks/grading/answers/*.yaml (format and labelling rule in
that folder's README.md), grades each against its scenario's rubric in the built-in pack (or the
packs given), and reports precision, recall and F1 over (answer, key point) pairs, micro-averaged
overall, per scenario and per answer style, with red-flag precision and recall beside them. Then
it times grading ``--count`` answers from empty caches, beside a baseline in the same run (only
splitting the same answers into lower-case words): answers of about 80 words against one rubric,
and the set repeated, each answer against its own rubric.
Exits 1 when F1 is below 0.85 overall or below 0.7 for any scenario (saying which, and leaving
the results file alone), and 2 when there is nothing to measure or the set does not fit the
rubrics.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.report import machine, write_section
from prepbot.content.loader import builtin_pack_path, load_packs
from prepbot.content.model import Rubric
from prepbot.core.grading import Grade, compile_rubric, grade

HEADING = "Rubric grader"
REPO = Path(__file__).resolve().parents[1]
ANSWERS = Path(__file__).resolve().parent / "grading" / "answers"
UNSEEN = ANSWERS.parent / "unseen"  # written after the terms were tuned; never tuned on
STYLES = ("short", "long", "wrong", "partial", "paraphrase", "negated", "stuffed", "typo")
MIN_F1 = 0.85
MIN_SCENARIO_F1 = 0.7
TIME_LIMIT = 2.0  # seconds for 10,000 answers (reported, not gated: a busy machine is slower)
_WORDS = re.compile(r"\w+")


@dataclass(frozen=True)
class Labelled:
    """One answer of the evaluation set and what a human interviewer credits it with."""

    file: Path
    index: int
    scenario: str
    text: str
    points: frozenset[str]
    red_flags: frozenset[str]
    style: str

    @property
    def where(self) -> str:
        """Return where the answer is written: file and position."""
        return f"{self.file.name}: answers[{self.index}]"


@dataclass
class Counts:
    """True and false positives and false negatives over (answer, point) pairs."""

    tp: int = 0
    fp: int = 0
    fn: int = 0
    answers: int = 0

    def add(self, predicted: Iterable[str], labelled: Iterable[str]) -> None:
        """Count one answer's predicted ids against its labelled ones."""
        said, truth = set(predicted), set(labelled)
        self.tp += len(said & truth)
        self.fp += len(said - truth)
        self.fn += len(truth - said)
        self.answers += 1

    @property
    def precision(self) -> float | None:
        """Return the share of predicted pairs that are labelled, or None with none predicted."""
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else None

    @property
    def recall(self) -> float | None:
        """Return the share of labelled pairs predicted, or None with none labelled."""
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else None

    @property
    def f1(self) -> float | None:
        """Return F1, or None when there is no pair at all (nothing labelled or predicted)."""
        if not self.tp + self.fp + self.fn:
            return None
        return 2 * self.tp / (2 * self.tp + self.fp + self.fn)


@dataclass
class Scores:
    """Agreement of the grader with the labels, overall and broken down."""

    points: Counts = field(default_factory=Counts)
    flags: Counts = field(default_factory=Counts)
    by_scenario: dict[str, Counts] = field(default_factory=dict)
    by_style: dict[str, Counts] = field(default_factory=dict)
    misses: list[tuple[Labelled, Grade]] = field(default_factory=list)


def score(cases: Sequence[Labelled], grades: Sequence[Grade]) -> Scores:
    """Compare each answer's grade with its labels (micro-averaged over (answer, id) pairs)."""
    scores = Scores()
    for case, found in zip(cases, grades, strict=True):
        predicted = found.covered_ids
        raised = [m.id for m in found.red_flags]
        scores.points.add(predicted, case.points)
        scores.flags.add(raised, case.red_flags)
        scores.by_scenario.setdefault(case.scenario, Counts()).add(predicted, case.points)
        scores.by_style.setdefault(case.style, Counts()).add(predicted, case.points)
        if set(predicted) != case.points or set(raised) != case.red_flags:
            scores.misses.append((case, found))
    return scores


def failures(scores: Scores) -> list[str]:
    """Return why the grader fails the gate: F1 overall and per scenario."""
    failed = []
    overall = scores.points.f1
    if overall is None or overall < MIN_F1:
        failed.append(f"overall F1 {_exact(overall)} is below {MIN_F1}")
    for scenario, counts in sorted(scores.by_scenario.items()):
        if counts.f1 is not None and counts.f1 < MIN_SCENARIO_F1:
            failed.append(f"{scenario}: F1 {_exact(counts.f1)} is below {MIN_SCENARIO_F1}")
    return failed


def load_cases(folder: Path) -> tuple[list[Labelled], list[str]]:
    """Read every ``*.yaml`` file of the evaluation set; return its answers and its problems."""
    cases: list[Labelled] = []
    problems: list[str] = []
    for path in sorted(folder.glob("*.yaml")):
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
            problems.append(f"{path.name}: cannot read: {error}")
            continue
        if not isinstance(data, dict) or set(data) != {"scenario", "answers"}:
            problems.append(f"{path.name}: must be a mapping of exactly 'scenario' and 'answers'")
            continue
        if not isinstance(data["scenario"], str) or not isinstance(data["answers"], list):
            problems.append(f"{path.name}: 'scenario' must be an id, 'answers' a list")
            continue
        for index, raw in enumerate(data["answers"]):
            case = _case(path, index, data["scenario"], raw, problems)
            if case is not None:
                cases.append(case)
    return cases, problems


def _case(path: Path, index: int, scenario: str, raw: Any, problems: list[str]) -> Labelled | None:
    where = f"{path.name}: answers[{index}]"
    allowed = {"text", "points", "red_flags", "style"}
    if not isinstance(raw, dict) or not {"text", "style"} <= set(raw) <= allowed:
        problems.append(f"{where}: needs 'text' and 'style', may have 'points' and 'red_flags'")
        return None
    text, style = raw["text"], raw["style"]
    points, flags = raw.get("points") or [], raw.get("red_flags") or []
    if not isinstance(text, str) or not text.strip():
        problems.append(f"{where}: 'text' must be the answer's text")
        return None
    if style not in STYLES:
        problems.append(f"{where}: style '{style}' is not one of {', '.join(STYLES)}")
        return None
    if not all(isinstance(i, str) for i in [*points, *flags]):
        problems.append(f"{where}: 'points' and 'red_flags' must be lists of ids")
        return None
    return Labelled(path, index, scenario, text, frozenset(points), frozenset(flags), style)


def check_against(cases: Sequence[Labelled], rubrics: dict[str, Rubric | None]) -> list[str]:
    """Return the labels that do not fit the scenarios' rubrics (unknown ids, no rubric)."""
    problems = []
    for case in cases:
        if case.scenario not in rubrics:
            problems.append(f"{case.where}: no scenario '{case.scenario}' in the packs")
            continue
        rubric = rubrics[case.scenario]
        if rubric is None:
            problems.append(f"{case.where}: scenario '{case.scenario}' has no rubric")
            continue
        unknown = sorted(case.points - {p.id for p in rubric.key_points})
        unknown += sorted(case.red_flags - {f.id for f in rubric.red_flags})
        if unknown:
            problems.append(f"{case.where}: ids not in the rubric: {', '.join(unknown)}")
    return problems


@dataclass
class Timing:
    """How long grading took, beside the baseline of splitting the same answers into words."""

    count: int
    scenario: str  # the rubric of the one-rubric round
    words: float  # mean words per answer of that round
    baseline: float
    round: float  # seconds to grade the one-rubric round
    mixed_words: float  # mean words per answer of the set
    mixed_baseline: float
    mixed: float  # seconds to grade the set repeated, each answer against its own rubric
    first: float  # seconds per answer graded with nothing compiled or remembered


def long_answers(texts: Sequence[str], count: int, words: int = 80) -> list[str]:
    """Return ``count`` answers of ``words`` words: windows over the texts run together.

    Each window starts a few words after the last (wrapping around), so the answers differ
    while sharing their vocabulary, as a round's answers do.
    """
    stream = " ".join(texts).split()
    while len(stream) < 2 * words:
        stream += stream
    step = max(1, len(stream) // 97)
    answers = []
    for number in range(count):
        start = (number * step + number // 97) % len(stream)
        window = (stream + stream[:words])[start : start + words]
        answers.append(" ".join(window))
    return answers


def _time_round(work: Sequence[tuple[str, Rubric]]) -> tuple[float, float]:
    """Return the seconds to split the answers into words, then to grade them (caches empty)."""
    started = time.perf_counter()
    for text, _ in work:
        _WORDS.findall(text.lower())
    baseline = time.perf_counter() - started
    compile_rubric.cache_clear()
    started = time.perf_counter()
    for text, rubric in work:
        grade(text, rubric)
    return baseline, time.perf_counter() - started


def measure(cases: Sequence[Labelled], rubrics: dict[str, Rubric], count: int) -> Timing:
    """Time grading ``count`` answers, beside splitting them into words.

    Two rounds: answers of about 80 words against one rubric, as a big study group's round (the
    ``long`` answers of the scenario with the most labelled answers, or all of its answers if
    it has no long one, run together and cut into 80-word windows); and the whole set repeated,
    each answer against its own rubric.
    """
    by_scenario: dict[str, list[Labelled]] = {}
    for case in cases:
        by_scenario.setdefault(case.scenario, []).append(case)
    scenario = max(sorted(by_scenario), key=lambda s: len(by_scenario[s]))
    prose = [c.text for c in by_scenario[scenario] if c.style == "long"]
    long = long_answers(prose or [c.text for c in by_scenario[scenario]], count)
    baseline, round_ = _time_round([(text, rubrics[scenario]) for text in long])

    work = [(c.text, rubrics[c.scenario]) for c in cases]
    mixed = list(islice(_cycle(work), count))
    mixed_baseline, mixed_time = _time_round(mixed)

    first = 0.0
    sample = work[:200]
    for text, rubric in sample:
        compile_rubric.cache_clear()
        started = time.perf_counter()
        grade(text, rubric)
        first += time.perf_counter() - started
    compile_rubric.cache_clear()
    return Timing(
        count=count,
        scenario=scenario,
        words=sum(len(_WORDS.findall(t)) for t in long) / len(long),
        baseline=baseline,
        round=round_,
        mixed_words=sum(len(_WORDS.findall(t)) for t, _ in work) / len(work),
        mixed_baseline=mixed_baseline,
        mixed=mixed_time,
        first=first / len(sample),
    )


def _cycle(items: list[tuple[str, Rubric]]) -> Iterable[tuple[str, Rubric]]:
    while True:
        yield from items


def _shown(path: Path) -> str:
    """Return a path relative to the repository when it is inside it."""
    try:
        return str(path.resolve().relative_to(REPO))
    except ValueError:
        return str(path)


def _exact(value: float | None) -> str:
    """Return a score with three decimals, so 0.697 does not read as passing 0.7."""
    return "—" if value is None else f"{value:.3f}"


def _num(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def _row(name: str, counts: Counts, target: str = "—") -> str:
    met = "—"
    if target != "—":
        met = "yes" if counts.f1 is not None and counts.f1 >= float(target[2:]) else "no"
    return (
        f"| {name} | {counts.answers} | {counts.tp + counts.fn} | {_num(counts.precision)} | "
        f"{_num(counts.recall)} | {_num(counts.f1)} | {target} | {met} |"
    )


def section(sets: Sequence[tuple[Path, Sequence[Labelled], Scores]], timing: Timing) -> list[str]:
    """Return the Markdown section of the results file: one table per labelled set."""
    command = " ".join(["python3", "benchmarks/grader.py", *sys.argv[1:]])
    lines = [
        f"## {HEADING}",
        "",
        f"Command: `{command}` on {machine()}.",
        "",
        "Each labelled answer is graded against its scenario's rubric. Precision, recall and F1 "
        "are micro-averaged over (answer, key point) pairs: a pair is a true positive when the "
        "grader credits a point the label credits. Red flags are counted the same way over "
        "(answer, red flag) pairs. Labels follow `benchmarks/grading/answers/README.md`.",
        "",
    ]
    for folder, cases, scores in sets:
        lines += _set_table(folder, cases, scores)
    lines += [
        "`grading/answers` is the set the rubrics' `look_for` terms were tuned on, so its scores "
        "are optimistic; `grading/unseen` was written after tuning, by writers who saw only the "
        "key-point sentences, and is never tuned on: read it as the grader's accuracy on "
        "members' answers.",
        "",
    ]
    return lines + _timing_table(timing, min(len(sets[0][1]), 200))


def _set_table(folder: Path, cases: Sequence[Labelled], scores: Scores) -> list[str]:
    """Return one labelled set's heading line and table."""
    head = "| what | answers | labelled points | precision | recall | F1 | target | met? |"
    rule = "| --- | --- | --- | --- | --- | --- | --- | --- |"
    flags = scores.flags
    styles = sorted(scores.by_style, key=lambda s: STYLES.index(s))
    readme = folder / "README.md"
    about = (
        readme.read_text(encoding="utf-8").splitlines()[0].lstrip("# ") if readme.exists() else ""
    )
    return [
        f"**`{_shown(folder)}`** — {len(cases)} answers to {len(scores.by_scenario)} scenarios"
        f"{f' ({about.lower()})' if about else ''}:",
        "",
        head,
        rule,
        _row("all answers", scores.points, f"≥ {MIN_F1}"),
        *(
            _row(f"scenario `{name}`", counts, f"≥ {MIN_SCENARIO_F1}")
            for name, counts in sorted(scores.by_scenario.items())
        ),
        *(_row(f"style: {name}", scores.by_style[name]) for name in styles),
        f"| red flags | {flags.answers} | {flags.tp + flags.fn} | {_num(flags.precision)} | "
        f"{_num(flags.recall)} | {_num(flags.f1)} | — | — |",
        "",
    ]


def _timing_table(timing: Timing, sampled: int) -> list[str]:
    """Return the timing table."""
    return [
        "| what | measured | relative | target |",
        "| --- | --- | --- | --- |",
        f"| baseline: split {timing.count:,} answers of {timing.words:.0f} words on average "
        f"into lower-case words | {timing.baseline * 1e3:,.0f} ms | — | — |",
        f"| grade those {timing.count:,} answers against one rubric (`{timing.scenario}`), "
        f"from empty caches | {timing.round * 1e3:,.0f} ms "
        f"({timing.round / timing.count * 1e6:,.0f} µs an answer) | "
        f"{timing.round / timing.baseline:,.1f}x baseline | < {TIME_LIMIT:.0f} s "
        f"({'met' if timing.round < TIME_LIMIT * timing.count / 10_000 else 'not met'}) |",
        f"| baseline: split the labelled set, repeated to {timing.count:,} answers "
        f"({timing.mixed_words:.0f} words on average) | {timing.mixed_baseline * 1e3:,.0f} ms "
        "| — | — |",
        f"| grade those {timing.count:,} answers, each against its own rubric | "
        f"{timing.mixed * 1e3:,.0f} ms ({timing.mixed / timing.count * 1e6:,.0f} µs an answer) "
        f"| {timing.mixed / timing.mixed_baseline:,.1f}x baseline | — |",
        f"| worst case: one answer with nothing compiled or remembered (mean of "
        f"{sampled}) | {timing.first * 1e3:,.2f} ms | — | — |",
        "",
        "The grader compiles each rubric once and remembers how it read each distinct word, so "
        "a round's answers, which share most of their words, cost little more than reading them; "
        "the worst case is the first answer after start-up.",
        "",
    ]


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    folders: list[Path] = args.answers_dir or [ANSWERS, UNSEEN]
    report = load_packs(args.pack or [builtin_pack_path()])
    rubrics = {s.scenario.id: s.scenario.rubric for s in report.scenarios}
    for broken in report.problems:  # a broken scenario not in the set does not matter here
        print(f"warning: {broken}", file=sys.stderr)
    ready = {name: rubric for name, rubric in rubrics.items() if rubric is not None}
    sets: list[tuple[Path, list[Labelled], Scores]] = []
    failed: list[str] = []
    for folder in folders:
        cases, problems = load_cases(folder)
        if not cases and not problems:
            print(
                f"no labelled answers in {folder} (see its README.md for the format): "
                "nothing to measure",
                file=sys.stderr,
            )
            return 2
        problems += check_against(cases, rubrics)
        if problems:
            for problem in problems:
                print(f"problem: {problem}", file=sys.stderr)
            print(f"{len(problems)} problems: fix the evaluation set or the packs", file=sys.stderr)
            return 2
        grades = [grade(c.text, ready[c.scenario]) for c in cases]
        scores = score(cases, grades)
        if args.show_misses:
            for case, found in scores.misses:
                print(
                    f"{case.where} ({case.style}): labelled {sorted(case.points)} "
                    f"{sorted(case.red_flags)}; graded {list(found.covered_ids)} "
                    f"{[m.id for m in found.red_flags]}{' stuffed' if found.stuffed else ''}"
                )
                print(f"    {case.text.strip()[:300]}")
        sets.append((folder, cases, scores))
        failed += [f"{_shown(folder)}: {reason}" for reason in failures(scores)]
    timing = measure(sets[0][1], ready, args.count)
    lines = section(sets, timing)
    print("\n".join(lines))
    for reason in failed:
        print(f"FAILED: {reason}", file=sys.stderr)
    if failed:
        return 1
    if args.write:
        write_section(args.write, HEADING, lines)
    return 0


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    """Read the command line."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument(
        "--answers-dir",
        type=Path,
        action="append",
        help="a labelled set (repeatable; default: grading/answers and grading/unseen)",
    )
    parser.add_argument(
        "--pack", type=Path, action="append", help="a pack to grade against (default: built-in)"
    )
    parser.add_argument("--count", type=int, default=10_000, help="answers graded for timing")
    parser.add_argument(
        "--show-misses", action="store_true", help="print each answer graded unlike its label"
    )
    parser.add_argument("--write", type=Path, help="replace this section of that results file")
    return parser.parse_args(argv)


if __name__ == "__main__":
    sys.exit(main())
