"""Discord embeds stay within Discord's limits; the invite URL asks for exactly what is used."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, date, datetime
from urllib.parse import parse_qs, urlparse

import discord
import pytest
from typer.testing import CliRunner

from prepbot.cli import app as cli
from prepbot.content.loader import load_packs
from prepbot.core.views import (
    LeaderboardRow,
    LeaderboardView,
    MemberRef,
    Milestone,
    QuestionCard,
    RevealCard,
)
from prepbot.platforms.discord.adapter import BOT_PERMISSIONS
from prepbot.platforms.discord.embeds import render
from tests.conftest import BUILTIN_PACK

PACK = load_packs([BUILTIN_PACK])
ALICE, BOB = MemberRef("111", "alice"), MemberRef("222", "bob")


def within_limits(embed: discord.Embed) -> None:
    assert len(embed) <= 6000
    assert len(embed.title or "") <= 256
    assert len(embed.description or "") <= 4096
    assert len(embed.fields) <= 25
    assert all(len(f.value or "") <= 1024 for f in embed.fields)


@pytest.mark.parametrize("loaded", PACK.scenarios, ids=lambda s: s.scenario.id)
def test_every_scenario_renders_within_discord_limits(loaded):
    scenario = loaded.scenario
    card = QuestionCard.of(
        scenario,
        PACK.topics,
        round_date=date(2026, 3, 2),
        reveal_at=datetime(2026, 3, 2, 17, tzinfo=UTC),
        timezone="Europe/London",
    )
    question = render(card)
    within_limits(question.embeds[0])
    assert f"<t:{int(datetime(2026, 3, 2, 17, tzinfo=UTC).timestamp())}:F>" in (
        question.embeds[0].description or ""
    )
    reveal = render(
        RevealCard.of(
            scenario,
            on_time=(ALICE,),
            late=(BOB,),
            milestones=(Milestone(ALICE, 3),),
            is_round=True,
        )
    )
    within_limits(reveal.embeds[0])
    assert reveal.content.startswith("Answered on time: <@111>")
    assert "Late answers: <@222>" in reveal.content
    assert reveal.mentions == [111, 222]
    assert str(scenario.source.url) in str(reveal.embeds[0].to_dict())


def test_a_huge_insight_is_cut_to_fit():
    scenario = PACK.scenarios[0].scenario
    huge = replace(RevealCard.of(scenario), insights=("x" * 10_000, "y" * 5_000))
    within_limits(render(huge).embeds[0])


def test_a_reveal_of_two_thousand_answers_pings_at_most_fifty_and_counts_the_rest():
    members = tuple(MemberRef(str(10**17 + n), f"m{n}") for n in range(2000))
    card = RevealCard.of(
        PACK.scenarios[0].scenario,
        on_time=members,
        milestones=tuple(Milestone(m, 10) for m in members[:3]),
        is_round=True,
    )
    message = render(card)
    assert len(message.content) <= 2000
    assert len(re.findall(r"<@\d+>", message.content)) <= 50
    assert len(message.mentions) <= 50
    assert set(message.mentions) == {int(i) for i in re.findall(r"<@(\d+)>", message.content)}
    assert "and 1,953 others — thank you!" in message.content  # 47 named beside 3 milestones
    within_limits(message.embeds[0])


def test_leaderboards_name_members_without_pinging_them():
    board = LeaderboardView(
        "#study",
        "all time",
        None,
        (LeaderboardRow(1, ALICE, 3, 0, 3), LeaderboardRow(2, BOB, 1, 0, 0)),
    )
    message = render(board)
    text = message.embeds[0].description or ""
    assert "@alice" in text
    assert "<@111>" not in text
    assert message.content == ""


def test_the_invite_url_asks_for_the_bot_and_commands_with_exact_permissions():
    result = CliRunner().invoke(cli, ["discord", "invite-url", "--application-id", "1234"])
    assert result.exit_code == 0, result.output
    query = parse_qs(urlparse(result.output.strip()).query)
    assert query["client_id"] == ["1234"]
    assert set(query["scope"][0].split()) == {"bot", "applications.commands"}
    granted = discord.Permissions(int(query["permissions"][0]))
    assert granted == BOT_PERMISSIONS
    assert granted.send_messages_in_threads
    assert granted.create_public_threads
    assert not granted.administrator
    assert not granted.manage_messages


def test_the_invite_url_without_an_application_id_says_where_to_find_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path
):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PREPBOT_DISCORD__APPLICATION_ID", raising=False)
    result = CliRunner().invoke(cli, ["discord", "invite-url"])
    assert result.exit_code == 2
    assert "Developer Portal" in result.stderr
