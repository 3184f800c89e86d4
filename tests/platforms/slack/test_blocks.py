"""Every view becomes a Slack message that Slack accepts and that reads right in a channel."""

from __future__ import annotations

import ast
import json
import re
from dataclasses import replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

from prepbot.content.loader import LoadedScenario, PackReport, load_packs
from prepbot.content.model import Scenario
from prepbot.core.views import (
    ErrorView,
    HelpView,
    LeaderboardRow,
    LeaderboardView,
    MemberRef,
    Milestone,
    Notice,
    QuestionCard,
    RevealCard,
    ScenarioDetail,
    SearchResult,
    SearchResults,
    SharedAnswer,
    StreakView,
    TopicEntry,
    TopicsView,
    View,
)
from prepbot.platforms.slack import blocks as blocks_module
from prepbot.platforms.slack.blocks import SlackMessage, escape, render, slack_length
from tests.conftest import BUILTIN_PACK, scenario_data

ALICE = MemberRef("U1", "alice")
BOB = MemberRef("U2", "bob")
CAROL = MemberRef("U3", "carol")
REVEAL_AT = datetime(2026, 3, 3, 17, 0, tzinfo=UTC)
BLOCK_TYPES = {"header", "section", "context", "divider", "actions"}
# What may legitimately sit between < and > in mrkdwn: a mention, a link or a date token.
SLACK_TOKEN = re.compile(r"<(@U[A-Z0-9]+|https?://[^|<>\s]+\|[^<>]+|!date\^\d+\^[^|<>]+\|[^<>]+)>")
ENTITY = re.compile(r"&(amp|lt|gt);")


@pytest.fixture(scope="module")
def pack() -> PackReport:
    report = load_packs([BUILTIN_PACK])
    assert report.ok, report.problems
    return report


def builtin_ids() -> list[str]:
    return [s.scenario.id for s in load_packs([BUILTIN_PACK]).scenarios]


def scenario_of(pack: PackReport, scenario_id: str) -> Scenario:
    found: list[LoadedScenario] = [s for s in pack.scenarios if s.scenario.id == scenario_id]
    return found[0].scenario


def round_question(pack: PackReport, scenario: Scenario) -> QuestionCard:
    return QuestionCard.of(
        scenario,
        pack.topics,
        round_date=date(2026, 3, 3),
        reveal_at=REVEAL_AT,
        timezone="Europe/London",
    )


def round_reveal(scenario: Scenario, **changes: Any) -> RevealCard:
    fields: dict[str, Any] = {
        "is_round": True,
        "on_time": (ALICE, BOB),
        "late": (CAROL,),
        "milestones": (Milestone(ALICE, 7),),
    }
    return RevealCard.of(scenario, **(fields | changes))


def mrkdwn_texts(message: SlackMessage) -> list[str]:
    """Every mrkdwn text of the message, section and context alike."""
    found: list[str] = []
    for block in message.blocks:
        if block["type"] == "section":
            found.append(block["text"]["text"])
        elif block["type"] == "context":
            found += [element["text"] for element in block["elements"]]
    return found


def shown(message: SlackMessage) -> str:
    """All the text a reader sees in the blocks, headers included, one block a line."""
    headers = [b["text"]["text"] for b in message.blocks if b["type"] == "header"]
    return "\n".join(headers + mrkdwn_texts(message))


def assert_slack_accepts(message: SlackMessage) -> None:
    """Check what Slack checks (types, lengths, counts) and that nothing renders by accident."""
    assert message.text.strip(), "no fallback text for notifications and screen readers"
    assert 1 <= len(message.blocks) <= 50
    json.dumps(message.blocks)  # the payload is plain JSON
    for block in message.blocks:
        assert block["type"] in BLOCK_TYPES, block
        if block["type"] == "header":
            assert block["text"]["type"] == "plain_text"
            assert 1 <= slack_length(block["text"]["text"]) <= 150
            assert "\n" not in block["text"]["text"]
        elif block["type"] == "section":
            assert block["text"]["type"] == "mrkdwn"
            assert block["text"]["text"].strip()
            assert slack_length(block["text"]["text"]) <= 3000
        elif block["type"] == "context":
            assert 1 <= len(block["elements"]) <= 10
            for element in block["elements"]:
                assert element["type"] == "mrkdwn"
                assert element["text"].strip()
                assert slack_length(element["text"]) <= 3000
        elif block["type"] == "actions":
            assert 1 <= len(block["elements"]) <= 25
            for element in block["elements"]:
                assert element["type"] == "button"
                assert element["text"]["type"] == "plain_text"
                assert 1 <= slack_length(element["text"]["text"]) <= 75
                assert 1 <= len(element["action_id"]) <= 255
    for text in [*mrkdwn_texts(message), message.text]:
        rest = SLACK_TOKEN.sub("", text)
        assert "<" not in rest, text
        assert ">" not in rest.replace("\n>", ""), text  # only block quotes start with >
        assert "&" not in ENTITY.sub("", rest), text


@pytest.mark.parametrize("scenario_id", builtin_ids())
def test_every_builtin_question_posts_with_its_prompts_and_reveal_time(
    pack: PackReport, scenario_id: str
):
    scenario = scenario_of(pack, scenario_id)
    message = render(round_question(pack, scenario))
    assert_slack_accepts(message)
    assert message.blocks[0] == {
        "type": "header",
        "text": {"type": "plain_text", "text": scenario.title, "emoji": True},
    }
    text = shown(message)
    for prompt in scenario.prompts:
        assert escape(prompt) in text
    assert f"`{scenario.id}`" in text
    assert "📅 Question of the day — Tue 3 Mar 2026" in text
    assert "Reply in this thread to answer." in text
    assert escape(scenario.title) in message.text  # the fallback text is mrkdwn: "<" escaped


@pytest.mark.parametrize("scenario_id", builtin_ids())
def test_every_builtin_reveal_credits_the_source_and_the_members(
    pack: PackReport, scenario_id: str
):
    scenario = scenario_of(pack, scenario_id)
    message = render(round_reveal(scenario))
    assert_slack_accepts(message)
    header = message.blocks[0]["text"]["text"]
    assert header.startswith("💡 Key insights — ")
    text = shown(message)
    assert f"<{scenario.source.url}|" in text
    assert "✅ Answered on time: <@U1>, <@U2>" in text
    assert "⏰ Late answers: <@U3>" in text
    assert "🔥 <@U1> reached a 7-round streak!" in text
    for insight in scenario.insights:
        assert f"• {escape(insight)}" in text
    assert "@alice" in message.text  # the fallback names members too


@pytest.mark.parametrize("scenario_id", builtin_ids())
def test_every_builtin_scenario_shows_in_full_as_question_then_reveal(
    pack: PackReport, scenario_id: str
):
    scenario = scenario_of(pack, scenario_id)
    detail = ScenarioDetail(QuestionCard.of(scenario, pack.topics), RevealCard.of(scenario))
    message = render(detail)
    assert_slack_accepts(message)
    types = [b["type"] for b in message.blocks]
    divider = types.index("divider")
    assert message.blocks[0]["text"]["text"] == scenario.title
    assert message.blocks[divider + 1]["text"]["text"] == "💡 Key insights"
    assert "Answered on time" not in shown(message)  # not a round: no scoring
    assert str(scenario.source.url) in shown(message)


def test_the_reveal_time_is_a_slack_date_with_the_channel_time_as_fallback(pack: PackReport):
    card = round_question(pack, pack.scenarios[0].scenario)
    text = shown(render(card))
    unix = int(REVEAL_AT.timestamp())
    assert f"<!date^{unix}^{{date_short_pretty}} at {{time}}|Tue 3 Mar 17:00 Europe/London>" in text


def test_a_question_without_a_reveal_time_does_not_ask_for_answers(pack: PackReport):
    card = QuestionCard.of(pack.scenarios[0].scenario, pack.topics)
    text = shown(render(card))
    assert "Reply in this thread" not in text
    assert "<!date" not in text


def test_a_practice_question_says_it_is_private_and_not_scored(pack: PackReport):
    card = QuestionCard.of(pack.scenarios[0].scenario, pack.topics, practice=True)
    message = render(card)
    assert_slack_accepts(message)
    assert "Practice question — only you can see this, not scored" in shown(message)
    assert "Question of the day" not in shown(message)


def test_company_and_role_appear_on_the_card_when_known(pack: PackReport):
    scenario = Scenario.model_validate(scenario_data())
    text = shown(render(QuestionCard.of(scenario, pack.topics)))
    assert "Acme · ML engineer" in text
    alone = Scenario.model_validate(
        scenario_data(context={"situation": "An interviewer asks.", "role": "Researcher"})
    )
    assert "Researcher" in shown(render(QuestionCard.of(alone, pack.topics)))
    assert " · Researcher" not in shown(render(QuestionCard.of(alone, pack.topics)))


def test_a_round_nobody_answered_on_time_says_so(pack: PackReport):
    scenario = pack.scenarios[0].scenario
    message = render(round_reveal(scenario, on_time=(), late=(), milestones=()))
    assert_slack_accepts(message)
    text = shown(message)
    assert "Nobody answered this one on time." in text
    assert "<@" not in text
    assert "Late answers" not in text


def test_a_looked_up_reveal_has_no_round_credits(pack: PackReport):
    message = render(RevealCard.of(pack.scenarios[0].scenario))
    assert message.blocks[0]["text"]["text"] == "💡 Key insights"
    assert "Nobody answered" not in shown(message)


def test_the_trap_is_quoted_and_follow_ups_listed(pack: PackReport):
    scenario = Scenario.model_validate(scenario_data())
    text = shown(render(RevealCard.of(scenario)))
    assert "\n>The confident one." in text
    assert "Confidence is not accuracy." in text
    assert "*Follow-ups*\n• How do you compute ECE?" in text
    assert "<https://example.com/post/1|Jane Doe> (@janedoe)" in text


def test_a_10000_character_insight_is_cut_to_fit_and_the_credit_survives():
    scenario = Scenario.model_validate(
        scenario_data(insights=["Start of a very long insight. " + "word " * 2000, "Short one."])
    )
    assert len(scenario.insights[0]) > 10_000
    for view in (
        round_reveal(scenario),
        ScenarioDetail(QuestionCard.of(scenario, {}), RevealCard.of(scenario)),
    ):
        message = render(view)
        assert_slack_accepts(message)
        text = shown(message)
        assert "• Start of a very long insight." in text
        assert "…" in text
        assert "• Short one." in text
        assert "<https://example.com/post/1|Jane Doe>" in text
    assert "<@U1>" in shown(render(round_reveal(scenario)))


def test_too_many_blocks_are_cut_to_50_with_a_pointer_to_the_rest():
    insights = [f"Insight {n}: " + "detail " * 420 for n in range(80)]
    scenario = Scenario.model_validate(scenario_data(insights=insights))
    message = render(round_reveal(scenario))
    assert_slack_accepts(message)
    assert len(message.blocks) == 50
    texts = mrkdwn_texts(message)
    assert "…and more: `/prep show sample-scenario`" in texts
    # Credit and the members' names outlive the cut.
    assert texts[-1].startswith("✅ Answered on time: <@U1>, <@U2>")
    assert "Source: <https://example.com/post/1|Jane Doe>" in texts[-2]


def test_a_huge_round_mentions_fifty_members_and_counts_the_rest(pack: PackReport):
    members = tuple(MemberRef(f"U{n:05d}", f"m{n}") for n in range(2000))
    late = tuple(MemberRef(f"L{n:05d}", f"l{n}") for n in range(5))
    milestones = tuple(Milestone(m, 10) for m in members[:12])
    card = round_reveal(
        pack.scenarios[0].scenario, on_time=members, late=late, milestones=milestones
    )
    message = render(card)
    assert_slack_accepts(message)
    text = shown(message) + message.text
    assert len(set(re.findall(r"<@[UL]\d+>", text))) <= 50
    assert "<@U00000>" in text
    assert "and 1,960 others — thank you!" in text  # 40 named: 10 milestones take the rest
    assert "⏰ Late answers: 5 members" in text
    assert "…and 2 others reached a streak milestone!" in text


def test_question_titles_too_long_for_a_header_end_with_an_ellipsis(pack: PackReport):
    card = replace(
        QuestionCard.of(pack.scenarios[0].scenario, pack.topics), title="A & B " + "x" * 300
    )
    message = render(card)
    assert_slack_accepts(message)
    header = message.blocks[0]["text"]["text"]
    assert len(header) == 150
    assert header.startswith("A & B x")  # plain text: shown as typed, not escaped
    assert header.endswith("…")


def test_content_cannot_ping_the_channel_or_break_formatting(pack: PackReport):
    card = replace(
        QuestionCard.of(pack.scenarios[0].scenario, pack.topics),
        situation="Is a < b & c? <!channel> <https://evil.example|click>",
        prompts=("What if x > y?",),
        company="AT&T",
    )
    message = render(card)
    assert_slack_accepts(message)
    text = shown(message)
    assert "Is a &lt; b &amp; c? &lt;!channel&gt; &lt;https://evil.example|click&gt;" in text
    assert "❓ *What if x &gt; y?*" in text
    assert "AT&amp;T" in text
    assert "<!channel>" not in message.text


def test_a_private_question_has_the_answer_button_and_its_running_count(pack: PackReport):
    scenario = pack.scenarios[0].scenario
    card = replace(round_question(pack, scenario), private=True)
    message = render(card)
    assert_slack_accepts(message)
    (actions,) = [b for b in message.blocks if b["type"] == "actions"]
    (button,) = actions["elements"]
    assert button["action_id"] == "prep_answer"
    assert button["text"]["text"] == "✍️ Answer"
    assert "private until the reveal" in shown(message)
    assert card.reveal_at is not None
    assert f"<!date^{int(card.reveal_at.timestamp())}^" in shown(message)  # in each reader's zone
    assert "\x00" not in shown(message)
    assert "Reply in this thread" not in shown(message)
    assert "so far" not in shown(message)  # no count until the services give one

    counted = render(replace(card, answer_count=5))
    assert_slack_accepts(counted)
    assert "🔒 5 answers so far" in shown(counted)
    assert "No answers yet" in shown(render(replace(card, answer_count=0)))
    thread_mode = render(round_question(pack, scenario))
    assert not [b for b in thread_mode.blocks if b["type"] == "actions"]


def test_a_reveal_shows_private_answers_by_name_before_the_insights(pack: PackReport):
    scenario = pack.scenarios[0].scenario
    shared = (
        SharedAnswer(ALICE, "Ring <all-reduce> & more"),
        SharedAnswer(MemberRef("U9", "*sneaky* <!here>"), "Tree."),
    )
    message = render(round_reveal(scenario, shared=shared))
    assert_slack_accepts(message)
    text = shown(message)
    assert "*alice*: Ring &lt;all-reduce&gt; &amp; more" in text
    assert "*sneaky &lt;!here&gt;*: Tree." in text  # no bold breaking out, no ping
    assert text.index("private until now") < text.index(escape(scenario.insights[0]))
    assert "<@U1>" not in "".join(t for t in mrkdwn_texts(message) if "private until now" in t)


def test_thousands_of_long_private_answers_fold_to_fit_one_message(pack: PackReport):
    scenario = pack.scenarios[0].scenario
    shared = tuple(
        SharedAnswer(MemberRef(f"U{n}", f"member {n} " + "x" * 60), f"answer {n} " + "word " * 600)
        for n in range(2000)
    )
    message = render(round_reveal(scenario, shared=shared))
    assert_slack_accepts(message)
    text = shown(message)
    assert "answer 0 " in text
    assert "(folded)" in text
    assert "more answers that did not fit here" in text
    assert "answer 1999 " not in text
    assert escape(scenario.insights[0]) in text  # the insights survive
    assert "Answered on time" in text  # so does the credit
    assert sum(slack_length(t) for t in mrkdwn_texts(message)) < 20_000
    assert slack_length(message.text) <= 40_000


def test_mrkdwn_escaping():
    assert escape("a < b & c") == "a &lt; b &amp; c"
    assert escape("x > y") == "x &gt; y"
    assert shown(render(Notice("a < b & c"))) == "a &lt; b &amp; c"
    assert render(Notice("a < b & c")).text == "a &lt; b &amp; c"


def test_a_mention_style_can_be_chosen_so_a_leaderboard_pings_nobody():
    row = LeaderboardRow(1, ALICE, 3, 0, 3, points=7)
    board = LeaderboardView("#ml", "this week", None, (row,))
    text = shown(render(board, mention=lambda m: f"@{m.name}"))
    assert "1. @alice — 3 on time · 7 points · streak 3 · 0 late" in text
    assert "<@" not in text


def test_the_leaderboard_lists_members_by_rank():
    board = LeaderboardView(
        "#ml",
        "this month",
        date(2026, 3, 1),
        (LeaderboardRow(1, ALICE, 3, 0, 3, points=9), LeaderboardRow(2, BOB, 1, 2, 0, points=2)),
    )
    message = render(board)
    assert_slack_accepts(message)
    assert message.blocks[0]["text"]["text"] == "🏆 Leaderboard — #ml, this month since Sun 1 Mar"
    text = shown(message)
    assert (
        "1. <@U1> — 3 on time · 9 points · streak 3 · 0 late\n"
        "2. <@U2> — 1 on time · 2 points · streak 0 · 2 late"
    ) in text


def test_an_empty_leaderboard_says_how_to_get_on_it():
    message = render(LeaderboardView("#ml", "all time", None, ()))
    assert_slack_accepts(message)
    assert "No answers yet. Reply in a question's thread to get on the board." in shown(message)


def test_a_long_leaderboard_stays_within_slack_limits():
    rows = tuple(LeaderboardRow(n, MemberRef(f"U{n:05d}", f"m{n}"), 1, 0, 1) for n in range(5000))
    message = render(LeaderboardView("#ml", "all time", None, rows))
    assert_slack_accepts(message)
    assert len(message.blocks) == 50
    assert mrkdwn_texts(message)[-1].startswith("…and more")


def test_search_results_say_how_to_open_each_one():
    results = SearchResults(
        "kv cache",
        (
            SearchResult("paged-attention", "Paged attention", "Anthropic"),
            SearchResult("rag", "A failing RAG <system>", None),
        ),
    )
    message = render(results)
    assert_slack_accepts(message)
    text = shown(message)
    assert "1. *Paged attention* (Anthropic) — `/prep show paged-attention`" in text
    assert "2. *A failing RAG &lt;system&gt;* — `/prep show rag`" in text
    none = render(SearchResults("zzz", ()))
    assert "No scenario matches “zzz”" in shown(none)


def test_help_lists_commands_admin_commands_and_this_channel():
    view = HelpView(
        commands=(("`/prep today`", "this channel's open question"),),
        admin_commands=(("`/prep search <words>`", "find scenarios"),),
        subscription="study group, daily at 09:00",
    )
    message = render(view)
    assert_slack_accepts(message)
    text = shown(message)
    assert "`/prep today` — this channel's open question" in text
    assert "*Admins:*\n`/prep search &lt;words&gt;` — find scenarios" in text
    assert "This channel: study group, daily at 09:00" in text
    plain = render(HelpView(commands=view.commands, admin_commands=()))
    assert "Admins" not in shown(plain)
    assert "This channel" not in shown(plain)


@pytest.mark.parametrize(
    ("view", "expected"),
    [
        (StreakView(ALICE, 3, 5, 10, 2), "🔥 <@U1>: streak *3* (best 5) · 10 on time · 2 late"),
        (
            TopicsView((TopicEntry("rag", "RAG & retrieval", 4),)),
            "• `rag` — RAG &amp; retrieval (4)",
        ),
        (Notice("Posted today's question."), "Posted today's question."),
        (ErrorView("Only admins can do that."), ":warning: Only admins can do that."),
    ],
)
def test_every_other_view_renders(view: View, expected: str):
    message = render(view)
    assert_slack_accepts(message)
    assert expected in shown(message)


def test_blocks_import_no_slack_library():
    tree = ast.parse(Path(blocks_module.__file__).read_text(encoding="utf-8"))
    imported = {
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    } | {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert not {name for name in imported if name.split(".")[0] in {"slack_bolt", "slack_sdk"}}
