"""Importing link summaries writes drafts an editor finishes; broken entries are skipped."""

from __future__ import annotations

from pathlib import Path

import yaml

from prepbot.content.importer import import_file, parse_link_summaries
from prepbot.content.loader import builtin_pack_path, load_packs

TOPICS = load_packs([builtin_pack_path()]).topics

ENTRY = """## [{author} - {title}]
**URL:** {url}
**Summary:** Someone asked about {title}.
**Interview Questions Mentioned:**
- "How would you do {title}?"
**Key Insights:**
- The first insight about {title}
- The second insight
  continues on a second line

---
"""


def entries(*titles: str) -> str:
    return "# Link summaries\n\n---\n" + "".join(
        ENTRY.format(author="Ann Lee", title=t, url=f"https://x.com/ann_lee/status/{n}")
        for n, t in enumerate(titles)
    )


def test_the_seed_imports_as_nineteen_drafts(seed_file: Path, tmp_path: Path):
    result = import_file(seed_file, tmp_path / "drafts", TOPICS)
    assert len(result.written) == 19
    assert result.problems == []
    assert len(list((tmp_path / "drafts").glob("*.yaml"))) == 19


def test_a_draft_keeps_the_facts_and_marks_what_is_left(seed_file: Path, tmp_path: Path):
    import_file(seed_file, tmp_path, TOPICS)
    draft = yaml.safe_load((tmp_path / "model-calibration-apple-scenario.yaml").read_text())
    assert draft["title"] == "Model Calibration"
    assert draft["context"]["company"] == "Apple"
    assert draft["prompts"] == [
        "Two models have identical 88% accuracy but one has 89% confidence and the other 99% "
        "confidence. Which do you choose?"
    ]
    assert draft["source"] == {
        "author": "Akshay Pachaar",
        "handle": "akshay_pachaar",
        "url": "https://x.com/akshay_pachaar/status/1994020936488734823",
        "title": "Model Calibration (Apple Scenario)",
    }
    assert "calibration" in draft["topics"]
    assert draft["kind"].startswith("TODO")
    assert all(i.startswith("TODO rewrite in your own words: ") for i in draft["insights"])
    points = draft["rubric"]["key_points"]
    assert len(points) == 3  # the fewest a rubric may have
    assert all(p["point"].startswith("TODO") and p["look_for"] == ["TODO"] for p in points)
    assert draft["follow_ups"] == []


def test_drafts_fail_the_check_until_every_todo_is_filled(seed_file: Path, tmp_path: Path):
    import_file(seed_file, tmp_path, TOPICS)
    report = load_packs([tmp_path])
    assert report.scenarios == []
    calibration = [p for p in report.problems if p.path.name.startswith("model-calibration")]
    fields = {p.field for p in calibration}
    assert {"kind", "difficulty", "context.situation", "trap.answer", "insights[0]"} <= fields
    assert {"rubric.key_points[0].point", "rubric.key_points[0].look_for[0]"} <= fields
    assert all("draft placeholder" in p.message for p in calibration)


def test_a_post_without_questions_gets_a_todo_prompt(seed_file: Path, tmp_path: Path):
    import_file(seed_file, tmp_path, TOPICS)
    draft = yaml.safe_load((tmp_path / "ml-interview-preparation-resources.yaml").read_text())
    assert draft["prompts"][0].startswith("TODO")


def test_a_broken_entry_is_named_by_line_and_the_rest_import(tmp_path: Path):
    text = entries("Alpha", "Beta", "Gamma").replace(
        "**URL:** https://x.com/ann_lee/status/1\n", ""
    )
    source = tmp_path / "links.md"
    source.write_text(text)
    beta_line = text.splitlines().index("## [Ann Lee - Beta]") + 1
    result = import_file(source, tmp_path / "out", TOPICS)
    assert [p.name for p in result.written] == ["alpha.yaml", "gamma.yaml"]
    assert [(p.line, p.message) for p in result.problems] == [
        (beta_line, "entry has no '**URL:**' line")
    ]


def test_malformed_headings_and_urls_are_reported():
    text = entries("Alpha") + "## Not bracketed\n**URL:** https://a.b/c\n---\n"
    text += "## [Bob - Gamma]\n**URL:** ftp://files\n**Key Insights:**\n- x\n"
    parsed = parse_link_summaries(text)
    assert [e.title for e in parsed.entries] == ["Alpha"]
    assert [p.message for p in parsed.problems] == [
        "heading must look like '## [Author - Title]'",
        "not an http(s) URL: 'ftp://files'",
    ]


def test_multi_line_bullets_are_joined():
    (entry,) = parse_link_summaries(entries("Alpha")).entries
    assert entry.insights[-1] == "The second insight continues on a second line"
    assert entry.questions == ["How would you do Alpha?"]


def test_existing_drafts_are_kept_unless_forced(tmp_path: Path):
    source = tmp_path / "links.md"
    source.write_text(entries("Alpha"))
    out = tmp_path / "out"
    import_file(source, out, TOPICS)
    (out / "alpha.yaml").write_text("edited by hand")
    again = import_file(source, out, TOPICS)
    assert again.written == []
    assert again.kept == [out / "alpha.yaml"]
    assert (out / "alpha.yaml").read_text() == "edited by hand"
    forced = import_file(source, out, TOPICS, force=True)
    assert forced.written == [out / "alpha.yaml"]
    assert (out / "alpha.yaml").read_text() != "edited by hand"


def test_two_entries_with_one_title_get_distinct_ids(tmp_path: Path):
    source = tmp_path / "links.md"
    source.write_text(entries("Alpha", "Alpha"))
    result = import_file(source, tmp_path / "out", TOPICS)
    assert [p.name for p in result.written] == ["alpha.yaml", "alpha-2.yaml"]
