"""Loading packs reports every problem at once, each with its file, line and field."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from prepbot.content.loader import Problem, load_packs
from tests.conftest import BUILTIN_PACK, PackFactory, scenario_data


def by_file(problems: list[Problem]) -> dict[str, list[Problem]]:
    found: dict[str, list[Problem]] = {}
    for problem in problems:
        found.setdefault(problem.path.name, []).append(problem)
    return found


def test_a_valid_pack_loads_its_scenarios_and_topics(make_pack: PackFactory):
    pack = make_pack(
        {
            "topics.yaml": {"topics": [{"id": "team-topic", "name": "Team topic"}]},
            "q/sample-scenario.yaml": scenario_data(topics=["team-topic", "calibration"]),
        }
    )
    report = load_packs([pack])
    assert report.ok, report.problems
    assert [s.scenario.id for s in report.scenarios] == ["sample-scenario"]
    assert "team-topic" in report.topics
    assert "calibration" in report.topics  # the built-in vocabulary is always available
    assert (
        report.summary() == f"1 scenario, 1 prompt, 2 topics used of {len(report.topics)}, 1 pack"
    )


def test_every_problem_of_a_broken_pack_is_reported_in_one_run(make_pack: PackFactory):
    pack = make_pack(
        {
            "broken-yaml.yaml": "id: broken-yaml\ntitle: [unclosed\nkind: technical\n",
            "no-insights.yaml": scenario_data(id="no-insights", insights=None),
            "sample-scenario.yaml": scenario_data(),
            "sub/sample-scenario.yml": scenario_data(),
        }
    )
    report = load_packs([pack])
    files = by_file(report.problems)

    (bad_yaml,) = files["broken-yaml.yaml"]
    assert bad_yaml.line == 3
    assert "invalid YAML" in bad_yaml.message

    (missing,) = files["no-insights.yaml"]
    assert (missing.field, missing.message) == ("insights", "missing required field")

    (duplicate,) = files["sample-scenario.yml"]
    assert duplicate.field == "id"
    assert "duplicate id 'sample-scenario'" in duplicate.message
    assert str(pack / "sample-scenario.yaml") in duplicate.message

    assert [s.scenario.id for s in report.scenarios] == ["sample-scenario"]


def test_duplicate_ids_across_packs_are_reported(make_pack: PackFactory):
    first = make_pack({"sample-scenario.yaml": scenario_data()})
    second = make_pack({"sample-scenario.yaml": scenario_data(title="Another")})
    report = load_packs([first, second])
    (problem,) = report.problems
    assert problem.path == second / "sample-scenario.yaml"
    assert "already used by" in problem.message


def test_problems_carry_the_line_of_the_offending_value(make_pack: PackFactory):
    text = (BUILTIN_PACK / "scenarios" / "google-gradient-sync-1000-gpus.yaml").read_text()
    text = text.replace("topics: [distributed-training,", "topics: [distributed-trainin,")
    text = text.replace("  - How would you synchronize", "  - ''\n  - How would you synchronize")
    text = text.replace("source:\n  author:", "source:\n  autor:")
    pack = make_pack({"google-gradient-sync-1000-gpus.yaml": text})
    lines = text.splitlines()
    report = load_packs([pack])
    found = {(p.field, p.line): p.message for p in report.problems}

    topic_line = next(i for i, line in enumerate(lines, 1) if "distributed-trainin," in line)
    assert "did you mean 'distributed-training'" in found["topics[0]", topic_line]
    prompt_line = next(i for i, line in enumerate(lines, 1) if line == "  - ''")
    assert found["prompts[0]", prompt_line] == "must not be empty"
    autor_line = next(i for i, line in enumerate(lines, 1) if "autor:" in line)
    assert "unknown field 'autor'" in found["source.autor", autor_line]
    assert "did you mean 'author'" in found["source.autor", autor_line]


def test_plain_messages_for_wrong_types_and_values(make_pack: PackFactory):
    pack = make_pack(
        {
            "sample-scenario.yaml": scenario_data(
                kind="quiz", prompts="just one string", source={"author": "A", "url": "nope"}
            )
        }
    )
    messages = {p.field: p.message for p in load_packs([pack]).problems}
    assert messages["kind"] == "must be one of: technical, system-design, behavioral, career"
    assert messages["prompts"] == "must be a list, got text"
    assert messages["source.url"].startswith("not a valid http(s) URL")


def test_files_that_are_not_scenarios_are_named(make_pack: PackFactory):
    pack = make_pack(
        {
            "empty.yaml": "",
            "list.yaml": "- a\n- b\n",
            "twice.yaml": "id: twice\ntitle: a\ntitle: b\n",
            "latin1.yaml": "",
        }
    )
    (pack / "latin1.yaml").write_bytes("title: caf\xe9".encode("latin-1"))
    messages = {p.path.name: p.message for p in load_packs([pack]).problems}
    assert messages["empty.yaml"] == "the file is empty"
    assert messages["list.yaml"] == "expected a mapping of fields, got a list"
    assert messages["twice.yaml"] == "key given twice; only the last one would count"
    assert messages["latin1.yaml"].startswith("not UTF-8 text")


def test_a_file_named_differently_from_its_id_is_an_error(make_pack: PackFactory):
    pack = make_pack({"other-name.yaml": scenario_data()})
    (problem,) = load_packs([pack]).problems
    assert "rename it to 'sample-scenario.yaml'" in problem.message


def test_a_missing_pack_folder_is_a_problem_not_a_crash(tmp_path: Path):
    report = load_packs([tmp_path / "nowhere"])
    assert [p.message for p in report.problems] == ["no such file or folder"]


def test_a_broken_topics_file_is_reported(make_pack: PackFactory):
    pack = make_pack({"topics.yaml": {"topics": [{"id": "Bad Id", "name": ""}]}})
    fields = {p.field for p in load_packs([pack]).problems}
    assert fields == {"topics[0].id", "topics[0].name"}


def test_a_single_file_can_be_checked_against_its_pack(make_pack: PackFactory):
    pack = make_pack(
        {
            "topics.yaml": {"topics": [{"id": "team-topic", "name": "Team topic"}]},
            "deep/sample-scenario.yaml": scenario_data(topics=["team-topic"]),
        }
    )
    report = load_packs([pack / "deep" / "sample-scenario.yaml"])
    assert report.ok, report.problems
    assert report.packs == [pack]


def billion_laughs(levels: int = 9) -> str:
    """Return the classic YAML bomb: nine aliases per level, 9**levels values once expanded."""
    lines = ['a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    previous = "a"
    for name in "bcdefghijk"[: levels - 1]:
        lines.append(f"{name}: &{name} [{', '.join([f'*{previous}'] * 9)}]")
        previous = name
    return "\n".join(lines) + "\n"


HOSTILE_FILES = {
    "billion-laughs": (
        billion_laughs(),
        ":5: invalid YAML: its aliases expand to more than 20000 values; write the values out",
    ),
    "self-reference": (
        "id: &a [*a]\n",
        ":1: invalid YAML: the alias *a refers to a node that contains it",
    ),
    "deep-nesting": ("id: " + "[" * 100_000 + "]" * 100_000 + "\n", ":1: invalid YAML: nested"),
    "huge": ("id: huge\n" + "# padding\n" * 30_000, ": too large: content files may be at most"),
}


@pytest.mark.parametrize(("text", "expected"), HOSTILE_FILES.values(), ids=list(HOSTILE_FILES))
def test_a_hostile_yaml_file_is_one_content_error_not_a_hang(
    text: str, expected: str, make_pack: PackFactory, tmp_path: Path
):
    pack = make_pack({"hostile.yaml": text})
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREPBOT_")}
    checked = subprocess.run(
        ["prepbot", "content", "check", str(pack)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,  # a hang fails this test instead of stalling the suite
    )
    assert checked.returncode == 1, checked.stderr
    line, summary = checked.stdout.splitlines()
    assert line.startswith(f"{pack / 'hostile.yaml'}{expected}")
    assert summary.startswith("FAILED: 1 problem in 1 file; without them: 0 scenarios")
    assert "Traceback" not in checked.stderr


def test_prepbot_run_refuses_a_billion_laughs_pack_with_the_same_line(
    make_pack: PackFactory, tmp_path: Path
):
    pack = make_pack({"hostile.yaml": billion_laughs()})
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREPBOT_")}
    env["PREPBOT_CONTENT__PACKS"] = f'["{pack}"]'
    env["PREPBOT_DATABASE__URL"] = f"sqlite:///{tmp_path / 'prepbot.db'}"
    done = subprocess.run(
        ["prepbot", "run"],
        input="",
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
    )
    assert done.returncode == 2
    first, last = done.stderr.splitlines()
    assert first.startswith(f"{pack / 'hostile.yaml'}:5: invalid YAML: its aliases expand")
    assert last.startswith("error: 1 problems in the content packs")


def test_a_term_the_grader_reads_as_one_letter_is_refused_with_its_line(make_pack: PackFactory):
    data = scenario_data()
    data["rubric"]["key_points"][0]["look_for"] = ["ring all-reduce", "√d", "β & KL", "##"]
    pack = make_pack({"sample-scenario.yaml": data})
    report = load_packs([pack])
    assert report.ok  # the bot still runs it
    found = {(w.field, w.message.split(":")[0]) for w in report.warnings}
    assert ("rubric.key_points[0].look_for[1]", "'√d' reads as 'd' only") in found
    assert (
        "rubric.key_points[0].look_for[3]",
        "'##' has no word the grader can read; write it in words, or pair it with one (\"β & KL\")",
    ) in found
    assert all("look_for[2]" not in (w.field or "") for w in report.warnings)  # paired: fine
    assert all(w.line for w in report.warnings)


@pytest.mark.parametrize(
    "text",
    [
        "id: " + "[" * 60 + "]" * 60 + "\n",
        "id: " + "{a: " * 60 + "1" + "}" * 60 + "\n",
        "".join(" " * n + f"k{n}:\n" for n in range(60)) + " " * 60 + "v\n",
        "- " * 60 + "x\n",
        "".join(f"- item {n}\n" for n in range(25_000)),
        "a: &a [1, 2]\nb: [*a, *a]\n",
        "a: &a\n  - 1\nb: *a\n",
    ],
    ids=[
        "flow-lists",
        "flow-maps",
        "block-maps",
        "compact-lists",
        "many-values",
        "alias",
        "anchor",
    ],
)
def test_the_quick_screen_sends_every_deep_big_or_aliased_file_to_the_full_check(text: str):
    from prepbot.content.loader import _maybe_explosive, _refuse_explosive

    assert _maybe_explosive(text)
    if "&" not in text:
        assert _refuse_explosive(text) is not None  # each shape really is one the check refuses


def test_the_quick_screen_lets_the_banks_own_files_skip_the_second_reading():
    from prepbot.content.loader import _maybe_explosive

    files = sorted((BUILTIN_PACK / "scenarios").glob("*.yaml"))
    assert not any(_maybe_explosive(f.read_text(encoding="utf-8")) for f in files)
