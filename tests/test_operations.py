"""Day-2 operations: start-up errors name the setting, doctor, health, metrics, logs, secrets."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import select

from prepbot.app import build_app
from prepbot.core.clock import ManualClock
from prepbot.settings import Settings
from prepbot.store.models import Answer, Member, Subscription
from tests.discord_fake import FakeDiscord
from tests.loopback import free_port
from tests.slack_fake import FakeSlack, event_callback, message_event, next_ts

SLACK_BOT = "xoxb-111-222-SUPERSECRETbot"
SLACK_APP = "xapp-1-A1-333-SUPERSECRETapp"
DISCORD_TOKEN = "MTAwMQ.SUPERSECRET.discordtoken"
SECRETS = (SLACK_BOT, SLACK_APP, DISCORD_TOKEN, "sekritpassword")
GUILD, ADMIN, ALICE, TEXT = 100, 501, 502, 2000


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREPBOT_")}
    return env | extra


def run(
    env: dict[str, str], cwd: Path, *args: str, stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["prepbot", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=120,
    )


def assert_no_secrets(*outputs: str) -> None:
    for output in outputs:
        for secret in SECRETS:
            assert secret not in output


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"PREPBOT_REQUIRE_PLATFORM": "true"}, "PREPBOT_SLACK__BOT_TOKEN"),
        ({"PREPBOT_SLACK__BOT_TOKEN": SLACK_BOT}, "PREPBOT_SLACK__APP_TOKEN"),
        ({"PREPBOT_SCHEDULE__TIMEZONE": "Mars/Olympus_Mons"}, "schedule.timezone"),
        ({"PREPBOT_CONTENT__PACKS": "team-questions"}, "content.packs"),
        (
            {
                "PREPBOT_DATABASE__URL": "postgresql://prep:sekritpassword@127.0.0.1:1/prep",
                "PREPBOT_SLACK__BOT_TOKEN": SLACK_BOT,
                "PREPBOT_SLACK__APP_TOKEN": SLACK_APP,
            },
            "database.url",
        ),
    ],
    ids=["no-platform", "missing-app-token", "bad-timezone", "unknown-folder", "no-database"],
)
def test_a_bad_start_stops_with_one_line_naming_the_setting(
    env: dict[str, str], named: str, tmp_path: Path
):
    done = run(clean_env(**env), tmp_path, "run")
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: ")
    assert named in lines[0]
    assert_no_secrets(done.stdout, done.stderr)


def test_tokens_can_come_from_files(tmp_path: Path):
    secret = tmp_path / "slack_bot_token"
    secret.write_text(SLACK_BOT + "\n")
    done = run(clean_env(PREPBOT_SLACK__BOT_TOKEN_FILE=str(secret)), tmp_path, "run")
    assert done.returncode == 2
    assert "PREPBOT_SLACK__APP_TOKEN" in done.stderr  # the token was read: Socket Mode wants more
    missing = run(
        clean_env(PREPBOT_SLACK__BOT_TOKEN_FILE=str(tmp_path / "absent")), tmp_path, "run"
    )
    assert missing.returncode == 2
    assert "PREPBOT_SLACK__BOT_TOKEN_FILE" in missing.stderr
    assert_no_secrets(done.stderr, missing.stderr)


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack(bot_token=SLACK_BOT, app_token=SLACK_APP) as fake:
        fake.add_user("U0ALICE", "alice")
        yield fake


@pytest.fixture
async def discord_fake() -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord(token=DISCORD_TOKEN) as fake:
        fake.add_guild(GUILD, "Prep Guild", owner_id=ADMIN)
        fake.add_member(GUILD, ALICE, "alice")
        fake.add_text_channel(GUILD, TEXT, "study")
        yield fake


def both_platforms(
    url: str, slack: FakeSlack, discord_fake: FakeDiscord, **extra: str
) -> dict[str, str]:
    return clean_env(
        PREPBOT_DATABASE__URL=url,
        PREPBOT_SLACK__BOT_TOKEN=SLACK_BOT,
        PREPBOT_SLACK__APP_TOKEN=SLACK_APP,
        PREPBOT_SLACK__API_URL=slack.api_url,
        PREPBOT_DISCORD__TOKEN=DISCORD_TOKEN,
        PREPBOT_DISCORD__API_URL=discord_fake.api_base,
        PREPBOT_DISCORD__GATEWAY_URL=discord_fake.gateway_url,
        PREPBOT_DISCORD__GUILD_IDS=f"[{GUILD}]",
        **extra,
    )


async def test_doctor_checks_everything_and_names_what_to_fix(
    database_url: str, slack: FakeSlack, discord_fake: FakeDiscord, tmp_path: Path
):
    good = both_platforms(database_url, slack, discord_fake)
    done = await asyncio.to_thread(run, good, tmp_path, "db", "upgrade")
    assert done.returncode == 0
    report = await asyncio.to_thread(run, good, tmp_path, "doctor")
    assert report.returncode == 0, report.stdout
    assert [line[0] for line in report.stdout.splitlines()] == ["✓"] * 5
    bad = good | {
        "PREPBOT_SLACK__BOT_TOKEN": "xoxb-wrong-SUPERSECRETbot",
        "PREPBOT_DISCORD__TOKEN": "wrong.SUPERSECRET.discordtoken",
    }
    report = await asyncio.to_thread(run, bad, tmp_path, "doctor")
    assert report.returncode == 1
    assert (
        "✗ slack: auth.test says invalid_auth — fix: check PREPBOT_SLACK__BOT_TOKEN"
        in report.stdout
    )
    assert (
        "✗ discord: /users/@me says 401 Unauthorized — fix: check PREPBOT_DISCORD__TOKEN"
        in report.stdout
    )
    assert "SUPERSECRET" not in report.stdout + report.stderr


async def healthz(port: int) -> tuple[int, dict[str, Any]]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}/healthz") as reply,
    ):
        return reply.status, await reply.json()


async def test_one_process_runs_slack_and_discord_reports_health_and_stops_cleanly(
    database_url: str, slack: FakeSlack, discord_fake: FakeDiscord, tmp_path: Path
):
    async def prepare() -> int:
        app = await build_app(
            Settings.model_validate({"database": {"url": database_url}}),
            ManualClock(datetime.now(UTC)),
        )
        try:
            from prepbot.core.commands import ScheduleChange
            from prepbot.core.events import Place

            group = await app.services.admin.subscribe(
                Place("slack", slack.team_id, "C0STUDY"), ScheduleChange()
            )
            slack.messages.setdefault("C0STUDY", [])
            return group.id
        finally:
            await app.close()

    await prepare()
    port = free_port()
    env = both_platforms(
        database_url, slack, discord_fake, PREPBOT_HTTP__PORT=str(port), PREPBOT_LOG__FORMAT="json"
    )
    process = await asyncio.create_subprocess_exec(
        "prepbot",
        "run",
        env=env,
        cwd=tmp_path,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        await slack.wait_for_socket(timeout=60)
        await discord_fake.wait_ready(timeout=60)
        status, body = 0, dict[str, Any]()
        for _ in range(200):
            try:
                status, body = await healthz(port)
            except aiohttp.ClientError:
                status = 0
            if status == 200:
                break
            await asyncio.sleep(0.1)
        assert status == 200, body
        assert body["checks"]["slack"] == {"ok": True, "detail": "connected"}
        assert body["checks"]["discord"] == {"ok": True, "detail": "connected"}
        assert body["checks"]["database"]["ok"]

        # A question is up in Slack; members answer; each answer is acknowledged.
        async with aiohttp.ClientSession() as session:
            form = {"channel": "C0STUDY", "text": "question"}
            async with session.post(
                slack.api_url + "chat.postMessage",
                data=form,
                headers={"Authorization": f"Bearer {SLACK_BOT}"},
            ) as reply:
                thread = (await reply.json())["ts"]
        await _open_round(database_url, thread)
        acknowledged = []
        for n in range(5):
            event = message_event(
                "C0STUDY", "U0ALICE", f"answer part {n}", next_ts(), thread_ts=thread
            )
            envelope = await slack.send_envelope("events_api", event_callback(event))
            await slack.wait_ack(envelope)
            acknowledged.append(f"answer part {n}")
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{port}/metrics") as reply,
        ):
            metrics = await reply.text()
        assert 'prepbot_answer_events_total{outcome="recorded"} 5.0' in metrics
    finally:
        process.send_signal(signal.SIGTERM)
        out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 0, err.decode()
    for line in err.decode().splitlines():
        json.loads(line)  # JSON logs, one object per line
    assert_no_secrets(out.decode(), err.decode())
    stored = await _answer_text(database_url)
    assert stored == "\n\n".join(acknowledged)


async def _open_round(url: str, thread: str) -> None:
    """Make the posted message today's open round of the Slack group, as a post would."""
    from prepbot.store.db import Database
    from prepbot.store.models import Round, RoundStatus, RoundThread

    db = Database(url)
    try:
        async with db.transaction() as session:
            group = await session.scalar(select(Subscription))
            assert group is not None
            now = datetime.now(UTC)
            session.add(
                Round(
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
            )
            await session.flush()
            round_id = await session.scalar(select(Round.id))
            assert round_id is not None
            session.add(RoundThread(subscription_id=group.id, message_id=thread, round_id=round_id))
    finally:
        await db.close()


async def _answer_text(url: str) -> str:
    from prepbot.store.db import Database

    db = Database(url)
    try:
        async with db.transaction() as session:
            return str(
                await session.scalar(
                    select(Answer.text)
                    .join(Member, Member.id == Answer.member_id)
                    .where(Member.external_id == "U0ALICE")
                )
            )
    finally:
        await db.close()


async def test_subscriptions_declared_in_the_config_file_are_applied(
    database_url: str, tmp_path: Path
):
    from prepbot.app import apply_declared_subscriptions

    settings = Settings.model_validate(
        {
            "database": {"url": database_url},
            "subscriptions": [
                {
                    "platform": "slack",
                    "community": "T1",
                    "channel": "C1",
                    "schedule": "08:00 Europe/London llm",
                },
                {"platform": "discord", "community": "100", "channel": "2000", "schedule": ""},
            ],
        }
    )
    app = await build_app(settings, ManualClock(datetime.now(UTC)))
    try:
        await apply_declared_subscriptions(app, settings)
        await apply_declared_subscriptions(app, settings)  # idempotent
        async with app.db.transaction() as session:
            groups = (
                await session.scalars(select(Subscription).order_by(Subscription.channel_id))
            ).all()
        assert [(g.channel_id, g.post_at, g.timezone, g.topics) for g in groups] == [
            ("2000", "09:00", "UTC", []),
            ("C1", "08:00", "Europe/London", ["llm"]),
        ]
    finally:
        await app.close()


def test_a_declared_subscription_with_a_bad_schedule_is_named(tmp_path: Path):
    config = tmp_path / "prepbot.toml"
    config.write_text(
        "[[subscriptions]]\n"
        'platform = "slack"\ncommunity = "T1"\nchannel = "C1"\nschedule = "25:00"\n'
    )
    done = run(clean_env(PREPBOT_CONFIG=str(config)), tmp_path, "doctor")
    assert done.returncode == 2
    assert "subscriptions.0.schedule" in done.stderr
    assert "'25:00' is not a time" in done.stderr


async def test_an_unreachable_platform_is_retried_while_the_other_serves(
    database_url: str, discord_fake: FakeDiscord, tmp_path: Path
):
    """Slack down at start: no traceback, no exit; /healthz names it; it connects when back."""
    slack_port, port = free_port(), free_port()
    slack = FakeSlack(bot_token=SLACK_BOT, app_token=SLACK_APP)  # not started: Slack is down
    env = clean_env(
        PREPBOT_DATABASE__URL=database_url,
        PREPBOT_SLACK__BOT_TOKEN=SLACK_BOT,
        PREPBOT_SLACK__APP_TOKEN=SLACK_APP,
        PREPBOT_SLACK__API_URL=f"http://127.0.0.1:{slack_port}/api/",
        PREPBOT_DISCORD__TOKEN=DISCORD_TOKEN,
        PREPBOT_DISCORD__API_URL=discord_fake.api_base,
        PREPBOT_DISCORD__GATEWAY_URL=discord_fake.gateway_url,
        PREPBOT_DISCORD__GUILD_IDS=f"[{GUILD}]",
        PREPBOT_HTTP__PORT=str(port),
    )
    process = await asyncio.create_subprocess_exec(
        "prepbot",
        "run",
        env=env,
        cwd=tmp_path,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        await discord_fake.wait_ready(timeout=60)
        body: dict[str, Any] = {}
        for _ in range(300):
            try:
                _, body = await healthz(port)
            except aiohttp.ClientError:
                body = {}
            checks = body.get("checks", {})
            slack_down = checks.get("slack", {}).get("detail", "").startswith("cannot")
            if slack_down and checks.get("discord", {}).get("ok"):
                break
            await asyncio.sleep(0.1)
        assert body["checks"]["slack"]["ok"] is False
        assert body["checks"]["slack"]["detail"].startswith("cannot reach Slack")
        assert body["checks"]["discord"] == {"ok": True, "detail": "connected"}
        assert process.returncode is None  # still serving Discord
        await slack.start(slack_port)  # Slack is back
        try:
            await slack.wait_for_socket(timeout=60)
            for _ in range(300):
                status, body = await healthz(port)
                if status == 200:
                    break
                await asyncio.sleep(0.1)
            assert body["checks"]["slack"] == {"ok": True, "detail": "connected"}
        finally:
            process.send_signal(signal.SIGTERM)
            _, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
            await slack.stop()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0
    log = stderr.decode()
    assert "Traceback" not in log
    told = [line for line in log.splitlines() if "WARNING" in line and "cannot reach Slack" in line]
    assert len(told) == 1, log  # told once, not at every retry
    assert "connected to Slack after" in log


async def test_discord_without_the_message_content_intent_says_which_switch(tmp_path: Path):
    async with FakeDiscord(token=DISCORD_TOKEN, privileged_intents=0) as fake:
        fake.add_guild(GUILD, "Prep Guild", owner_id=ADMIN)
        env = clean_env(
            PREPBOT_DISCORD__TOKEN=DISCORD_TOKEN,
            PREPBOT_DISCORD__API_URL=fake.api_base,
            PREPBOT_DISCORD__GATEWAY_URL=fake.gateway_url,
            PREPBOT_DISCORD__GUILD_IDS=f"[{GUILD}]",
            PREPBOT_HTTP__ENABLED="false",
        )
        done = await asyncio.to_thread(run, env, tmp_path, "run")
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, done.stderr
    line = errors[0]
    assert "Message Content Intent" in line
    assert "discord.token" not in line
    assert "The token is fine" in line
