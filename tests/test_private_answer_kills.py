"""A real `prepbot run` on Slack (Socket Mode) SIGKILLed while private answers arrive by modal.

Twenty members submit the Answer modal at once and the process is killed a random moment later:
some submissions were acknowledged, some never arrived, and one may have been stored but not
acknowledged (the kill fell between the commit and the ack: a window of a few event-loop steps,
rarely hit; the worker-level SIGKILL trials aim at it). Slack does not resend a modal, so the
members whose form stayed open submit again (the same payload) once the bot is back, and every
submission is delivered once more on top. Every acknowledged answer must be stored, every
answer exactly once, with the text its member wrote.
"""

from __future__ import annotations

import asyncio
import json
import random
import signal
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from prepbot.app import build_app
from prepbot.core.clock import ManualClock
from prepbot.settings import Settings
from prepbot.store.db import Database
from prepbot.store.models import Answer, Member, Round, RoundStatus, RoundThread
from tests.slack_fake import FakeSlack, view_submission
from tests.test_operations import SLACK_APP, SLACK_BOT, clean_env

CHANNEL = "C0STUDY"
KILLS = 3  # each a random moment into a burst of submissions
MEMBERS = [f"U0M{n:02d}" for n in range(20)]


async def _private_round(url: str, team: str) -> str:
    """Subscribe a private-mode group and open today's round; return its thread ts."""
    app = await build_app(
        Settings.model_validate({"database": {"url": url}}), ManualClock(datetime.now(UTC))
    )
    try:
        from prepbot.core.commands import ScheduleChange
        from prepbot.core.events import Place

        group = await app.services.admin.subscribe(
            Place("slack", team, CHANNEL), ScheduleChange(answer_mode="private")
        )
    finally:
        await app.close()
    thread = "1764000000.000100"
    db = Database(url)
    try:
        async with db.transaction() as session:
            now = datetime.now(UTC)
            round_ = Round(
                subscription_id=group.id,
                local_date=now.date(),
                scenario_id="apple-calibration-equal-accuracy",
                cycle=0,
                status=RoundStatus.POSTED,
                question_message_id=thread,
                claimed_at=now,
                posted_at=now,
                reveal_due_at=now.replace(year=now.year + 1),
            )
            session.add(round_)
            await session.flush()
            session.add(
                RoundThread(subscription_id=group.id, message_id=thread, round_id=round_.id)
            )
    finally:
        await db.close()
    return thread


def _submission(member: str, thread: str, team: str) -> dict[str, Any]:
    """Return the modal submission a member sends (one opened view each)."""
    view = {
        "id": f"V{member}",
        "type": "modal",
        "callback_id": "prep_answer_modal",
        "private_metadata": json.dumps({"channel": CHANNEL, "thread_ts": thread, "team_id": team}),
        "hash": "1.abc",
    }
    return view_submission(
        view,
        user_id=member,
        values={"answer": {"text": f"{member} thinks: temperature scaling, then ECE."}},
        team_id=team,
    )


async def _stored(url: str) -> dict[str, str]:
    db = Database(url)
    try:
        async with db.transaction() as session:
            rows = await session.execute(
                select(Member.external_id, Answer.text).join(Answer, Answer.member_id == Member.id)
            )
            return {member: text for member, text in rows.all()}  # noqa: C416
    finally:
        await db.close()


async def _start(url: str, fake: FakeSlack, cwd: Path) -> asyncio.subprocess.Process:
    connected = fake.socket_connections
    process = await asyncio.create_subprocess_exec(
        "prepbot",
        "run",
        env=clean_env(
            PREPBOT_DATABASE__URL=url,
            PREPBOT_SLACK__BOT_TOKEN=SLACK_BOT,
            PREPBOT_SLACK__APP_TOKEN=SLACK_APP,
            PREPBOT_SLACK__API_URL=fake.api_url,
        ),
        cwd=cwd,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    for _ in range(600):
        if fake.socket_connections > connected:
            await asyncio.sleep(0.2)  # bolt registers its listeners as the socket opens
            return process
        await asyncio.sleep(0.1)
    process.kill()
    raise AssertionError("prepbot did not connect to the fake Slack")


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack(bot_token=SLACK_BOT, app_token=SLACK_APP) as fake:
        yield fake


@pytest.mark.slow(seconds=40)
async def test_a_sigkill_among_modal_submissions_loses_no_acknowledged_answer(
    database_url: str, slack: FakeSlack, tmp_path: Path
):
    for member in MEMBERS:
        slack.add_user(member, member.lower())
    slack.messages.setdefault(CHANNEL, [])
    thread = await _private_round(database_url, slack.team_id)
    submissions = {m: _submission(m, thread, slack.team_id) for m in MEMBERS}
    chance = random.Random()
    process = await _start(database_url, slack, tmp_path)
    acknowledged: set[str] = set()

    async def submit(member: str) -> None:
        try:
            answer = await slack.send_interaction(submissions[member], timeout=5)
        except (TimeoutError, RuntimeError, ConnectionError):
            return  # the process died first: the member's form is still open
        assert answer is None, answer  # a plain ack closes the modal: stored
        acknowledged.add(member)

    unacknowledged_but_stored = 0
    try:
        for _ in range(KILLS):
            acknowledged.clear()
            sending = [asyncio.create_task(submit(m)) for m in MEMBERS]
            await asyncio.sleep(chance.uniform(0.0, 0.15))
            process.send_signal(signal.SIGKILL)
            await process.wait()
            await asyncio.gather(*sending)
            stored_at_kill = await _stored(database_url)
            assert acknowledged <= stored_at_kill.keys()  # nothing acknowledged was lost
            unacknowledged_but_stored += len(stored_at_kill.keys() - acknowledged)
            process = await _start(database_url, slack, tmp_path)
        # The members whose form stayed open submit again; every submission is replayed too.
        for member in MEMBERS:
            answer = await slack.send_interaction(submissions[member], timeout=10)
            assert answer is None, answer
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            await asyncio.wait_for(process.wait(), 30)
    print(f"stored but never acknowledged when killed: {unacknowledged_but_stored}")

    stored = await _stored(database_url)
    assert stored == {m: f"{m} thinks: temperature scaling, then ECE." for m in MEMBERS}
