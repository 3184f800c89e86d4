"""The /prep command surface on Discord: what is registered, how failures and autocomplete answer.

Driven through the real discord.py client against the loopback fake: the command definitions
are read from the fake's record of the application-command PUT, and every interaction goes
over the fake gateway. The database only stands behind the commands, so SQLite is enough.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

import pytest

from prepbot.content.loader import load_packs
from tests.conftest import BUILTIN_PACK
from tests.discord_fake import FakeDiscord
from tests.platforms.discord.test_discord_app import (
    ADMIN,
    ALICE,
    GUILD,
    TEXT,
    command,
)

EPHEMERAL = 64


def registered(fake: FakeDiscord) -> dict[str, Any]:
    """Return /prep as the bot registered it with Discord."""
    (prep,) = fake.commands[GUILD]
    assert prep["name"] == "prep"
    return prep


async def answers_to(fake: FakeDiscord, interaction: str) -> list[dict[str, Any]]:
    """Wait until the bot has answered an interaction; return what it sent, in order."""
    await fake.wait_for(
        lambda: any(r["kind"] in ("followup", "callback") for r in answer_bodies(fake, interaction))
    )
    return answer_bodies(fake, interaction)


def answer_bodies(fake: FakeDiscord, interaction: str) -> list[dict[str, Any]]:
    """Return the bot's answers that carry a message (not the "thinking…" deferral)."""
    return [
        r
        for r in fake.interaction_responses(interaction)
        if r["kind"] == "followup" or (r["kind"] == "callback" and r["json"]["type"] == 4)
    ]


def text_and_flags(answer: dict[str, Any]) -> tuple[str, int]:
    """Return the words of an answer (content and embeds) and its message flags."""
    body = answer["json"]["data"] if answer["kind"] == "callback" else answer["json"]
    return json.dumps(body, ensure_ascii=False), int(body.get("flags") or 0)


# -- what Discord shows ----------------------------------------------------------------------


async def test_every_command_and_option_has_a_specific_description(
    bot: Any, fake: FakeDiscord
) -> None:
    prep = registered(fake)
    subcommands = prep["options"]
    described = [("/prep", prep["description"])]
    for sub in subcommands:
        described.append((f"/prep {sub['name']}", sub["description"]))
        described += [
            (f"/prep {sub['name']} {o['name']}", o["description"]) for o in sub["options"]
        ]
    for where, description in described:
        assert description.strip() not in ("", "…", "..."), where
        assert 20 <= len(description) <= 100, (where, description)
        assert description.lower() != where.split()[-1].lower(), where
    # Each subcommand, and each option of one, says something of its own.
    assert len({s["description"] for s in subcommands}) == len(subcommands)
    for sub in subcommands:
        assert len({o["description"] for o in sub["options"]}) == len(sub["options"]), sub["name"]


async def test_leaderboard_periods_show_human_names_and_keep_their_values(
    bot: Any, fake: FakeDiscord
) -> None:
    (leaderboard,) = [s for s in registered(fake)["options"] if s["name"] == "leaderboard"]
    (period,) = [o for o in leaderboard["options"] if o["name"] == "period"]
    assert period["choices"] == [
        {"name": "this week", "value": "week"},
        {"name": "this month", "value": "month"},
        {"name": "all time", "value": "all"},
    ]
    await command(fake, ADMIN, "subscribe")
    board = await command(fake, ALICE, "leaderboard", [{"name": "period", "value": "month"}])
    assert "Leaderboard — #study, this month" in board


# -- failures are answered, privately and specifically ------------------------------------------


async def test_an_unknown_subcommand_gets_a_private_specific_reply(
    bot: Any, fake: FakeDiscord, caplog: pytest.LogCaptureFixture
) -> None:
    # A member whose Discord still shows a subcommand the bot no longer has.
    interaction = await fake.slash_command(
        GUILD, TEXT, ALICE, "prep", [{"type": 1, "name": "yearly-report", "options": []}]
    )
    (answer,) = await answers_to(fake, interaction)
    text, flags = text_and_flags(answer)
    assert "Unknown command `/prep yearly-report`. Try `/prep help`" in text
    assert flags & EPHEMERAL
    assert not [r for r in caplog.records if "Ignoring exception" in r.getMessage()]


async def test_a_period_that_is_not_a_choice_gets_a_private_specific_reply(
    bot: Any, fake: FakeDiscord
) -> None:
    interaction = await fake.slash_command(
        GUILD, TEXT, ALICE, "prep leaderboard", [{"name": "period", "value": "yearly"}]
    )
    (answer,) = await answers_to(fake, interaction)
    text, flags = text_and_flags(answer)
    assert "`yearly` is not a period: use week, month or all." in text
    assert flags & EPHEMERAL


async def test_a_failure_inside_a_deferred_command_is_answered_privately_and_logged_once(
    bot: Any, fake: FakeDiscord, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    # The answer itself cannot be sent (Discord refuses it); the member still hears back.
    fake.fail_next("POST", rf"/webhooks/{fake.application_id}/[^/]+", status=400, code=50035)
    interaction = await fake.slash_command(GUILD, TEXT, ALICE, "prep today")
    (answer,) = await answers_to(fake, interaction)
    text, _ = text_and_flags(answer)
    assert "Something went wrong running `/prep today`; it has been logged." in text
    (deferral,) = [r for r in fake.interaction_responses(interaction) if r["kind"] == "callback"]
    assert deferral["json"]["data"]["flags"] & EPHEMERAL  # so the reply that replaced it is too
    failures = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(failures) == 1
    assert "/prep today failed" in failures[0].getMessage()


async def test_a_failure_after_a_public_deferral_is_still_answered_only_to_the_member(
    bot: Any, fake: FakeDiscord
) -> None:
    # Admins' changes are deferred in public; an error must not land in the channel.
    fake.fail_next("POST", rf"/webhooks/{fake.application_id}/[^/]+", status=400, code=50035)
    interaction = await fake.slash_command(GUILD, TEXT, ADMIN, "prep pause")
    (answer,) = await answers_to(fake, interaction)
    text, flags = text_and_flags(answer)
    assert "Something went wrong running `/prep pause`" in text
    assert flags & EPHEMERAL
    kinds = [r["kind"] for r in fake.interaction_responses(interaction)]
    assert kinds == ["callback", "delete_original", "followup"]
    message = fake.interactions[interaction].followups[answer["message_id"]]
    assert message["flags"] & EPHEMERAL


# -- topic autocomplete -----------------------------------------------------------------------


async def offered(fake: FakeDiscord, name: str, option: str, typed: str) -> list[dict[str, Any]]:
    """Type into an autocompleted option; return the choices the bot offers."""
    interaction = await fake.autocomplete(
        GUILD, TEXT, ALICE, name, [{"name": option, "value": typed}], focused=option
    )
    await fake.wait_for(lambda: bool(fake.interaction_responses(interaction)))
    (response,) = fake.interaction_responses(interaction)
    assert response["json"]["type"] == 8
    choices: list[dict[str, Any]] = response["json"]["data"]["choices"]
    assert len(choices) <= 25
    assert all(len(c["name"]) <= 100 and len(c["value"]) <= 100 for c in choices)
    return choices


async def test_topic_autocomplete_finds_prefixes_and_several_words(
    bot: Any, fake: FakeDiscord
) -> None:
    async def values(typed: str) -> list[str]:
        return [c["value"] for c in await offered(fake, "prep ask", "topic", typed)]

    assert await values("ra") == ["rag"]
    assert await values("RA") == ["rag"]
    assert (await values("distributed tr"))[0] == "distributed-training"
    assert (await values("language mod"))[0] == "llm"
    assert (await values("calibraton"))[0] == "calibration"
    assert "distributed-training" in await values("gradient sync")
    everything = await offered(fake, "prep ask", "topic", "")
    assert len(everything) == 25
    assert everything[0]["name"] == "Adaptability (adaptability)"


async def test_schedule_topics_autocomplete_keeps_the_topics_already_chosen(
    bot: Any, fake: FakeDiscord
) -> None:
    choices = await offered(fake, "prep subscribe", "topics", "rag calib")
    assert choices[0]["value"] == "rag calibration"
    assert re.fullmatch(
        r"rag \+ Calibration and uncertainty \(calibration\) · \d+", choices[0]["name"]
    )
    first = await offered(fake, "prep subscribe", "topics", "llm")
    assert first[0]["value"] == "llm"
    assert {"llm-evaluation", "llm-serving"} <= {c["value"] for c in first}


async def test_schedule_topics_autocomplete_offers_all_and_shows_counts(
    bot: Any, fake: FakeDiscord
) -> None:
    choices = await offered(fake, "prep schedule", "topics", "")
    assert choices[0]["value"] == "all"
    assert choices[0]["name"].startswith("all: every topic and difficulty (")
    counted = {c["value"]: int(c["name"].rsplit("· ", 1)[1]) for c in choices[1:]}
    bank = [s.scenario for s in load_packs([BUILTIN_PACK]).scenarios]
    assert counted == {t: sum(t in s.topics for s in bank) for t in counted}
