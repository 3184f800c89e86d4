"""The prepbot command line, driven as a user types it."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml
from typer.testing import CliRunner

from prepbot.cli import app
from tests.conftest import BUILTIN_PACK, REPO, PackFactory, scenario_data

runner = CliRunner()


pytestmark = pytest.mark.usefixtures("isolated_settings")


def test_check_of_the_builtin_pack_passes_with_a_summary():
    result = runner.invoke(app, ["content", "check", str(BUILTIN_PACK)])
    assert result.exit_code == 0, result.output
    bank = len(list((BUILTIN_PACK / "scenarios").glob("*.yaml")))
    assert result.output.startswith(f"OK: {bank} scenarios, ")
    assert result.output.rstrip().endswith("1 pack")


def test_check_without_paths_checks_the_configured_packs(make_pack: PackFactory):
    team = make_pack({"sample-scenario.yaml": scenario_data()})
    result = runner.invoke(app, ["content", "check"], env={"PREPBOT_CONTENT__PACKS": str(team)})
    assert result.exit_code == 0, result.output
    bank = len(list((BUILTIN_PACK / "scenarios").glob("*.yaml")))
    assert f"{bank + 1} scenarios" in result.output
    assert "2 packs" in result.output


def test_check_names_every_problem_and_exits_1(make_pack: PackFactory):
    pack = make_pack(
        {
            "bad.yaml": "id: bad\ntitle: [oops\n",
            "no-insights.yaml": scenario_data(id="no-insights", insights=None),
            "sample-scenario.yaml": scenario_data(),
            "again/sample-scenario.yaml": scenario_data(),
        }
    )
    result = runner.invoke(app, ["content", "check", str(pack)])
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert any(line.startswith(f"{pack / 'bad.yaml'}:3: invalid YAML: ") for line in lines)
    assert f"{pack / 'no-insights.yaml'}:1: insights: missing required field" in lines
    id_line = yaml.safe_dump(scenario_data()).splitlines().index("id: sample-scenario") + 1
    duplicate = f"{pack / 'sample-scenario.yaml'}:{id_line}: id: duplicate id 'sample-scenario'"
    assert any(line.startswith(duplicate) for line in lines)
    assert lines[-1] == (  # on stdout after the problems, never read as "valid"
        "FAILED: 3 problems in 3 files; without them: 1 scenario, 1 prompt, "
        "1 topic used of " + lines[-1].rsplit("used of ", 1)[1]
    )
    assert lines[-1].endswith(", 1 pack")
    assert not result.stderr


def test_check_of_a_team_pack_alone_catches_an_id_of_the_built_in_bank(make_pack: PackFactory):
    taken = "google-gradient-sync-1000-gpus"
    pack = make_pack({f"{taken}.yaml": scenario_data(id=taken)})
    result = runner.invoke(app, ["content", "check", str(pack)])
    assert result.exit_code == 1
    assert f"id: duplicate id '{taken}': already used by " in result.stdout
    assert "in the built-in bank" in result.stdout


def test_a_copy_of_the_bank_being_edited_checks_as_the_bank_not_as_a_clash(tmp_path: Path):
    import shutil

    fork = tmp_path / "fork-content"
    shutil.copytree(BUILTIN_PACK, fork)
    result = runner.invoke(app, ["content", "check", str(fork)])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("OK: ")


def test_stats_count_the_bank_by_kind_difficulty_and_topic():
    result = runner.invoke(app, ["content", "stats", str(BUILTIN_PACK)])
    assert result.exit_code == 0, result.output
    bank = len(list((BUILTIN_PACK / "scenarios").glob("*.yaml")))
    lines = result.stdout.splitlines()
    assert lines[0] == f"{bank} scenarios"
    kinds = dict(part.split()[:2] for part in lines[1].removeprefix("kind: ").split(", "))
    assert sum(int(n) for n in kinds.values()) == bank
    assert any(line.split()[:2] == ["calibration", line.split()[1]] for line in lines)
    assert "scenarios without a rubric: none" in lines


def test_stats_refuse_a_broken_pack(make_pack: PackFactory):
    pack = make_pack({"bad.yaml": "id: bad\ntitle: [oops\n"})
    result = runner.invoke(app, ["content", "stats", str(pack)])
    assert result.exit_code == 2
    assert "problems in the given content packs" in result.stderr


def test_import_writes_drafts_and_reports_skipped_entries(seed_file: Path, tmp_path: Path):
    broken = tmp_path / "links.md"
    text = seed_file.read_text(encoding="utf-8")
    broken.write_text(
        text.replace("**URL:** https://x.com/alby13/status/1889874673527107601\n", "")
    )
    line = (
        text.splitlines().index("## [alby13 - Failed Anthropic Research Fellowship Interview]") + 1
    )
    result = runner.invoke(app, ["content", "import", str(broken), "--out", "drafts"])
    assert result.exit_code == 1
    assert f"{broken}:{line}: skipped: entry has no '**URL:**' line" in result.output
    assert "18 drafts written to drafts, 0 kept, 1 entries skipped" in result.output
    assert len(list(Path("drafts").glob("*.yaml"))) == 18
    draft = next(Path("drafts").glob("*.yaml"))
    schema = draft.read_text(encoding="utf-8").splitlines()[0].split("$schema=")[1]
    assert (draft.parent / schema).is_file()  # the editor finds the schema beside the drafts


def test_import_of_the_seed_into_an_empty_folder(seed_file: Path):
    result = runner.invoke(app, ["content", "import", str(seed_file), "-o", "new"])
    assert result.exit_code == 0, result.output
    assert "19 drafts written to new" in result.output
    again = runner.invoke(app, ["content", "import", str(seed_file), "-o", "new"])
    assert again.exit_code == 1
    assert "0 drafts written to new, 19 kept" in again.output


def test_import_of_a_missing_file_is_a_clear_error():
    result = runner.invoke(app, ["content", "import", "nope.md"])
    assert result.exit_code == 2
    assert "nope.md: no such file" in result.stderr


def test_search_lists_the_best_match_first():
    result = runner.invoke(app, ["content", "search", "gradient", "sync", "1000", "GPUs"])
    assert result.exit_code == 0, result.output
    ids = [
        line.split("│")[2].strip()
        for line in result.output.splitlines()
        if re.match(r"│\s+1 │", line)
    ]
    assert ids == ["google-gradient-sync-1000-gpus"]


def test_search_with_no_match_says_so():
    result = runner.invoke(app, ["content", "search", "qwxzv"])
    assert result.exit_code == 1
    assert "No scenario matches 'qwxzv'" in result.output


def test_show_prints_the_scenario_and_its_reveal():
    result = runner.invoke(app, ["content", "show", "apple-calibration-equal-accuracy"])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "Which do you choose?" in text
    assert "Expected Calibration Error" in text
    assert "Source: Akshay Pachaar (@akshay_pachaar)" in text


def test_show_of_a_mistyped_id_suggests_the_right_one():
    result = runner.invoke(app, ["content", "show", "apple-calibration"])
    assert result.exit_code == 1
    assert "Did you mean: apple-calibration-equal-accuracy" in result.stderr


def test_schema_validates_every_shipped_scenario_and_rejects_a_bad_one():
    result = runner.invoke(app, ["content", "schema"])
    assert result.exit_code == 0
    schema = json.loads(result.stdout)
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    for path in sorted((BUILTIN_PACK / "scenarios").glob("*.yaml")):
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        assert not list(validator.iter_errors(data)), path
    assert list(validator.iter_errors(scenario_data(topics=["not-a-topic"])))
    assert list(validator.iter_errors(scenario_data(extra_field=1)))


def test_the_committed_schema_is_up_to_date():
    result = runner.invoke(app, ["content", "schema"])
    committed = (REPO / "docs" / "scenario.schema.json").read_text(encoding="utf-8")
    assert result.stdout == committed, "run: prepbot content schema -o docs/scenario.schema.json"


def test_ask_shows_a_question_then_its_insights():
    result = runner.invoke(
        app,
        ["ask", "--id", "google-gradient-sync-1000-gpus"],
        input="Use ring all-reduce.\nIt spreads the load.\n",
    )
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert text.index("How would you synchronize learning") < text.index("Key insights")
    assert "Your answer: 7 words." in text


def test_ask_by_topic_only_picks_from_that_topic():
    from prepbot.content.loader import load_packs

    bank = [s.scenario for s in load_packs([BUILTIN_PACK]).scenarios]
    on_topic = {s.title[:40] for s in bank if "calibration" in s.topics}
    for _ in range(3):  # whichever it picks, it is on calibration
        result = runner.invoke(app, ["ask", "calibration"], input="")
        assert result.exit_code == 0, result.output
        shown = " ".join(result.output.split())
        assert any(" ".join(title.split()) in shown for title in on_topic), result.output
    unknown = runner.invoke(app, ["ask", "astrology"], input="")
    assert unknown.exit_code == 1
    assert "unknown topic 'astrology'" in unknown.stderr


def test_invalid_settings_stop_with_the_setting_named(tmp_path: Path):
    config = tmp_path / "prepbot.toml"
    config.write_text("[content]\nbuiltin = 'maybe'\n")
    result = runner.invoke(app, ["content", "check"], env={"PREPBOT_CONFIG": str(config)})
    assert result.exit_code == 2
    assert "setting content.builtin (PREPBOT_CONTENT__BUILTIN)" in result.stderr


def test_help_is_fast_because_it_imports_nothing_heavy():
    code = (
        "import sys; sys.argv = ['prepbot', '--help']\n"
        "from prepbot.cli import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "heavy = {'yaml', 'pydantic', 'pydantic_settings', 'rapidfuzz'} & set(sys.modules)\n"
        "print(sorted(heavy))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO
    )
    assert done.stdout.strip().splitlines()[-1] == "[]"
    assert "content" in done.stdout


def test_version_prints_the_installed_version():
    from importlib.metadata import version

    done = subprocess.run(["prepbot", "--version"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"prepbot {version('prepbot')}\n"


def test_the_installed_console_script_runs():
    done = subprocess.run(
        ["prepbot", "content", "check", str(BUILTIN_PACK)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("OK: ")


def _link_summaries(count: int) -> str:
    return "".join(
        f"## [Ann Lee - Title {n}]\n**URL:** https://x.com/ann_lee/status/{n}\n"
        f'**Interview Questions Mentioned:**\n- "Question {n}?"\n**Key Insights:**\n- a\n- b\n---\n'
        for n in range(count)
    )


@pytest.mark.parametrize(("entries", "shows_progress"), [(60, True), (3, False)])
def test_import_shows_progress_only_on_large_files(entries: int, shows_progress: bool):
    Path("links.md").write_text(_link_summaries(entries))
    result = runner.invoke(app, ["content", "import", "links.md"])
    assert result.exit_code == 0, result.output
    assert ("Importing" in result.stderr) is shows_progress
    assert f"{entries} drafts written to drafts" in result.stdout


def test_check_refuses_a_scenario_without_a_rubric_that_the_bot_still_runs(
    make_pack: PackFactory,
):
    pack = make_pack({"sample-scenario.yaml": scenario_data(rubric=None)})
    result = runner.invoke(app, ["content", "check", str(pack)])
    assert result.exit_code == 1
    assert f"{pack / 'sample-scenario.yaml'}: rubric: no rubric: members get no feedback" in (
        result.output
    )
    from prepbot.content.loader import load_packs

    report = load_packs([pack])
    assert report.ok  # the bot still loads it: a team pack written before rubrics keeps working
    assert len(report.warnings) == 1
