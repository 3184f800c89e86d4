"""The built-in pack: every file valid, every seed post credited, every quoted question asked."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from prepbot.content.importer import parse_link_summaries
from prepbot.content.loader import LoadedScenario, load_packs
from tests.conftest import BUILTIN_PACK

COPY_WINDOW = 9  # words in a row shared with the seed that count as copied text


@pytest.fixture(scope="module")
def pack() -> list[LoadedScenario]:
    report = load_packs([BUILTIN_PACK])
    assert report.ok, "\n".join(map(str, report.problems))
    return report.scenarios


def test_every_shipped_file_is_a_valid_scenario(pack: list[LoadedScenario]):
    shipped = sorted((BUILTIN_PACK / "scenarios").glob("*.y*ml"))
    assert sorted(s.path for s in pack) == shipped
    assert len(pack) >= 19
    assert sum(len(s.scenario.prompts) for s in pack) >= 24


def test_every_seed_post_is_credited_to_its_author(pack: list[LoadedScenario], seed_file: Path):
    entries = parse_link_summaries(seed_file.read_text(encoding="utf-8")).entries
    assert len(entries) == 19
    credited = {str(s.scenario.source.url): s.scenario.source for s in pack}
    for entry in entries:
        assert entry.url in credited, f"no scenario credits {entry.author}: {entry.url}"
        assert credited[entry.url].author == entry.author
        assert credited[entry.url].handle == entry.handle


def test_every_quoted_interview_question_is_a_prompt(pack: list[LoadedScenario], seed_file: Path):
    entries = parse_link_summaries(seed_file.read_text(encoding="utf-8")).entries
    quoted = [(e.url, q) for e in entries for q in e.questions]
    assert len(quoted) == 19
    for url, question in quoted:
        prompts = [p for s in pack if str(s.scenario.source.url) == url for p in s.scenario.prompts]
        assert question in prompts, f"{question!r} is not a prompt of the scenario for {url}"


def test_posts_without_a_quoted_question_get_a_discussion_prompt(
    pack: list[LoadedScenario], seed_file: Path
):
    entries = parse_link_summaries(seed_file.read_text(encoding="utf-8")).entries
    silent = [e for e in entries if not e.questions]
    assert len(silent) == 7
    for entry in silent:
        (scenario,) = [s.scenario for s in pack if str(s.scenario.source.url) == entry.url]
        assert all(len(prompt.split()) >= 6 for prompt in scenario.prompts)


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def test_scenarios_are_written_in_our_own_words(pack: list[LoadedScenario], seed_file: Path):
    seed = parse_link_summaries(seed_file.read_text(encoding="utf-8")).entries
    source_words = [_words(" ".join([e.summary, *e.insights])) for e in seed]
    copied = {
        " ".join(words[i : i + COPY_WINDOW])
        for words in source_words
        for i in range(len(words) - COPY_WINDOW + 1)
    }
    for loaded in pack:
        s = loaded.scenario
        ours = [s.title, s.context.situation, *s.insights, *s.hints]
        ours += [f.question for f in s.follow_ups] + [f.answer for f in s.follow_ups if f.answer]
        if s.rubric:
            ours += [p.point for p in s.rubric.key_points] + [f.flag for f in s.rubric.red_flags]
        if s.trap:
            ours += [s.trap.answer, s.trap.why_it_falls_short]
        for text in ours:
            # A phrase in quotation marks is credited to the author, not passed off as ours.
            unquoted = re.sub(r"[\"“][^\"”]*[\"”]", " ", text)
            words = _words(unquoted)
            runs = {
                " ".join(words[i : i + COPY_WINDOW]) for i in range(len(words) - COPY_WINDOW + 1)
            }
            assert not runs & copied, f"{loaded.path.name} copies the seed: {runs & copied}"


SEED_HOSTS = ("x.com", "twitter.com")


def test_the_bank_lasts_more_than_half_a_year_and_covers_the_interview_map(
    pack: list[LoadedScenario],
):
    """150+ scenarios, mostly technical, difficulties spread, few career items."""
    from collections import Counter

    scenarios = [s.scenario for s in pack]
    total = len(scenarios)
    assert total >= 150  # a Monday-to-Friday group: 30 weeks without a repeat
    kinds = Counter(s.kind.value for s in scenarios)
    assert kinds["technical"] + kinds["system-design"] >= 0.75 * total
    assert kinds["career"] <= 0.10 * total
    levels = Counter(s.difficulty.value for s in scenarios)
    assert 0.15 * total <= levels["easy"] <= 0.35 * total
    assert 0.35 * total <= levels["medium"] <= 0.65 * total
    assert 0.15 * total <= levels["hard"] <= 0.35 * total


def test_every_scenario_written_from_a_reference_names_it_with_a_link(
    pack: list[LoadedScenario],
):
    for loaded in pack:
        s = loaded.scenario
        assert s.rubric is not None, loaded.path.name
        assert 3 <= len(s.rubric.key_points) <= 7, loaded.path.name
        assert len(s.hints) >= 1, loaded.path.name
        assert all(f.answer for f in s.follow_ups), loaded.path.name
        if s.source.url.host not in SEED_HOSTS:  # not one of the seed posts: a reference's
            assert s.references, f"{loaded.path.name} has no reference"
            assert all(r.url for r in s.references)


def test_every_topic_is_used_by_three_scenarios_and_none_travel_together(
    pack: list[LoadedScenario],
):
    from prepbot.content.stats import RARE_TOPIC, bank_stats

    report = load_packs([BUILTIN_PACK])
    stats = bank_stats([s.scenario for s in pack], report.topics)
    assert not stats.unused_topics, "drop or use these topics"
    assert not stats.rare_topics, f"used by fewer than {RARE_TOPIC} scenarios"
    assert not stats.paired_topics, "these topics always travel together: merge them"
