"""Soak: a month of study groups on slow, failing platforms and a database that drops connections.

Issue 12 asks for it: platform calls randomly delayed 0-40 s and answered 429 (Retry-After up
to 20 s), 5xx or a timeout, database connections killed at random every few seconds, for the
equivalent of 30 days on both platforms, with 0 duplicate posts or reveals, 0 acknowledged
answers missing from their reveals, and a process that never exits.

What runs is the product as deployed, in one process: the real ``SlackRuntime`` (Events API over
HTTP, signed) or ``DiscordRuntime`` (gateway and REST) against its loopback fake, and the real
``run_scheduling`` loop (leadership, APScheduler jobs, ticks) in a task. Four study groups in
four time zones (two of them change to summer time during the 30 days) post and reveal on
their schedules while a driver moves a ``ManualClock`` from one scheduled moment to the next
and, at random moments, an admin runs ``/prep post-now`` or ``/prep reveal-now`` through the
platform. Members answer in the question threads through the real event path as soon as they
see a question on the platform (even before the bot knows its thread): most while the round
is open, some right as it is being revealed (a race), some after the reveal. On Slack an
answer is acknowledged when the Events API request gets its 200 (Slack times out after 3 s
and retries three times); Discord redelivers nothing, so every message sent there counts and
is acknowledged once it is stored.

Leases run on real time (``ctx.lease`` 3 s, renewed every second while a call is in flight),
as platform delays are real seconds; business time is the ``ManualClock``. Before the clock
passes a round's reveal time the driver waits until the round is posted and its on-time
answers are acknowledged: the faults may make a post take minutes, and a real day gives it
hours. It waits, too, until each scheduled round is claimed, so the catch-up grace is never
what skips a round.

Faults, while the month runs: a seeded 30% of platform calls are slow (carried out, answered
after 0..D s; past the client's timeout that is a timeout whose request was carried out), or
answered 429 with Retry-After 0..R s, or 500, or held back past the client's timeout (half of
them carried out first). On PostgreSQL a separate admin connection kills the app's
connections with ``pg_terminate_backend`` at random every few seconds, one kill in four the
scheduling leadership's connection too (which must be re-acquired). SQLite runs the same
month without the kills.

Asserted at the end: every scheduled round and every round an admin asked for is posted
exactly once and revealed exactly once (the bot's messages on the fake, per round); every
acknowledged answer is stored; one acknowledged before its round's reveal began is credited
on time in the reveal; one sent after the reveal appeared is late and not credited; the
reveal's on-time credits are exactly the on-time answers; no held reply is left; the
scheduling task and the platform connection still run; on PostgreSQL the lead was lost to a
kill and taken again. The numbers are printed (``-s``). When a reveal "began" is bounded from
below, never guessed: the moment the clock first showed its reveal time (after the round was
claimed), or an admin's reveal-now in its channel answered after the round was claimed.
Answers in between (racing a reveal) may be on time or late, as long as the reveal says what
is stored.

Scale: CI runs 6 simulated days with delays of 0-2.5 s, Retry-After up to 2 s, a 2 s client
timeout and kills every 0.5-2.5 s (the same shape, compressed). The issue's full scale, 30
days, delays 0-40 s, Retry-After up to 20 s, the production 30 s client timeout, kills every
1-6 s (about half an hour per platform):

    PREPBOT_SOAK=full TEST_POSTGRES_URL=postgresql://postgres@127.0.0.1:5432/test \\
        python3 -m pytest tests/test_soak.py -k postgresql -s
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import random
import re
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Protocol
from urllib.parse import urlencode

import aiohttp
import pytest
from sqlalchemy import select
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from prepbot.app import App, build_app
from prepbot.core.clock import ManualClock
from prepbot.core.commands import Subscribe, parse_prep
from prepbot.core.events import Place
from prepbot.core.schedule import Schedule
from prepbot.leadership import Leadership, PostgresLeadership, leadership_for
from prepbot.platforms.discord.adapter import DiscordRuntime, nonce
from prepbot.platforms.slack.adapter import SlackRuntime
from prepbot.scheduling import RoundScheduler, run_scheduling
from prepbot.services.base import schedule_of
from prepbot.settings import Settings
from prepbot.store.db import async_url
from prepbot.store.models import (
    Answer,
    HeldReply,
    Member,
    Reply,
    Round,
    RoundStatus,
    Subscription,
)
from tests.discord_fake import FakeDiscord, dated_by
from tests.slack_fake import FakeSlack, event_callback, message_event, sign, slash_command

SOAK_ENV = "PREPBOT_SOAK"
SEED_ENV = "PREPBOT_SOAK_SEED"
LOG_ENV = "PREPBOT_SOAK_LOG"  # a file to write the run's log to (prepbot's INFO and up)


def first_monday_of_march(year: int) -> datetime:
    """Return midnight UTC of March's first Monday: New York and London change clocks after."""
    first = datetime(year, 3, 1, tzinfo=UTC)
    return first + timedelta(days=(7 - first.weekday()) % 7)


# In the future: APScheduler keeps real time, and a reveal job dated in the past would fire at
# once, again and again. The fake Discord dates its messages by the simulated clock, as
# Discord's clock and the host's agree in production.
START = first_monday_of_march(datetime.now(UTC).year + 2)
SCHEDULES = (
    "09:00 UTC daily reveal=+6h",
    "10:30 Europe/London daily reveal=17:00",
    "08:00 America/New_York mon-fri reveal=+4h",
    "07:00 Asia/Kolkata daily reveal=+8h",
)
FAULTS = ("slow", "429", "500", "timeout")
RATE = 0.3
LEASE = timedelta(seconds=3)
ADMIN_ACTIONS_PER_DAY = 3
OBSERVER = "prepbot-soak-observer"  # connections the kills spare: the test's own
KILLER = "prepbot-soak-killer"
SECRET = "soak-signing-secret"


@dataclass(frozen=True)
class Scale:
    """How big the soak is: simulated days, fault sizes (seconds), waits (seconds)."""

    name: str
    days: int
    max_delay: float  # D: a slow answer comes 0..D s late
    max_retry_after: int  # R: a 429's Retry-After is 0..R s
    client_timeout: float  # the platform clients give up after this
    hold: float  # a timed-out answer is held this long (longer than the client waits)
    kill_every: tuple[float, float]  # seconds between two database kills
    slack_retry_gaps: tuple[float, ...]  # Slack resends an unacknowledged event after these
    wait: float  # the longest the driver waits for one thing before calling it stuck
    stored_within: float  # a Discord message is stored within this, or it is lost
    command_wait: float  # an admin command is answered within this, or it failed


CI_SCALE = Scale(
    name="ci",
    days=6,
    max_delay=2.5,
    max_retry_after=2,
    client_timeout=2.0,
    hold=2.5,
    kill_every=(0.5, 2.5),
    slack_retry_gaps=(0.2, 1.0, 3.0),
    wait=180.0,
    stored_within=15.0,
    command_wait=30.0,
)
FULL_SCALE = Scale(
    name="full",
    days=30,
    max_delay=40.0,
    max_retry_after=20,
    client_timeout=30.0,  # the Slack client's in production
    hold=35.0,
    kill_every=(1.0, 6.0),
    slack_retry_gaps=(1.0, 10.0, 30.0),
    wait=1800.0,
    stored_within=60.0,
    command_wait=300.0,
)


def scale() -> Scale:
    """Return the full scale when ``PREPBOT_SOAK=full``, else the CI scale."""
    return FULL_SCALE if os.environ.get(SOAK_ENV, "").strip().lower() == "full" else CI_SCALE


# -- what the driver sees on a platform ---------------------------------------------------------


@dataclass(frozen=True)
class Post:
    """A question the bot posted, as the platform shows it."""

    channel: str
    key: str  # names its round: Slack's metadata (scenario, date), Discord's nonce
    message_id: str  # the thread answers go to
    open: bool  # members can answer in it (on Discord: its thread exists)


@dataclass(frozen=True)
class Ack:
    """What became of one answer sent through the platform."""

    message_id: str
    acked: bool
    at: float  # time.monotonic() of the acknowledgement (or of giving up)
    attempts: int


class World(Protocol):
    """One platform and its fake, as the soak drives them."""

    name: str
    channels: tuple[str, ...]
    members: tuple[str, ...]
    observer: Observer | None

    def place(self, channel: str) -> Place: ...

    def started(self, url: str, clock: ManualClock) -> Any: ...

    def storm(self, seed: int) -> None: ...

    def calm(self) -> None: ...

    def injected(self) -> list[Any]: ...

    def questions(self) -> list[Post]: ...

    def key_of(self, channel: str, day: date, scenario: str) -> str: ...

    def reveals(self, channel: str, thread: str) -> list[tuple[str, set[str]]]: ...

    async def reply(self, channel: str, thread: str, member: str, text: str) -> Ack: ...

    async def command(self, channel: str, text: str) -> str: ...

    def alive(self) -> bool: ...


ON_TIME = re.compile(r"Answered on time:(.*?)(?:Late answers:|🔥|$)", re.S)
MENTION = re.compile(r"<@!?([A-Z0-9]+)>")


def is_digest(message: dict[str, Any]) -> bool:
    """Say whether a bot message on Discord is a weekly digest (not a question)."""
    return any(
        str((embed.get("footer") or {}).get("text", "")).startswith("prepbot weekly digest")
        for embed in message.get("embeds") or []
    )


def on_time_credits(text: str) -> set[str]:
    """Return the member ids a reveal credits as on time."""
    found = ON_TIME.search(text)
    return set(MENTION.findall(found.group(1))) if found else set()


# -- Slack ---------------------------------------------------------------------------------------


class SlackWorld:
    """The real SlackRuntime (Events API over HTTP) against the fake Slack."""

    name = "slack"
    channels: tuple[str, ...] = ("C0SOAKUTC", "C0SOAKLON", "C0SOAKNYC", "C0SOAKKOL")
    members: tuple[str, ...] = ("U0ANA", "U0BEN", "U0CHE", "U0DEV")
    admin = "U0ADA"

    def __init__(self, fake: FakeSlack, scale: Scale) -> None:
        self.fake, self.scale = fake, scale
        self.observer: Observer | None = None
        self.runtime: SlackRuntime | None = None
        self.session: aiohttp.ClientSession | None = None
        self.clock: ManualClock | None = None
        self._ts = itertools.count(1)
        for user in (*self.members, self.admin):
            fake.add_user(user, user.removeprefix("U0").lower())
        for channel in self.channels:
            fake.messages.setdefault(channel, [])

    def place(self, channel: str) -> Place:
        return Place("slack", self.fake.team_id, channel)

    @asynccontextmanager
    async def started(self, url: str, clock: ManualClock) -> AsyncIterator[App]:
        configured = Settings.model_validate(
            {
                "database": {"url": url},
                "slack": {
                    "bot_token": self.fake.bot_token,
                    "signing_secret": SECRET,
                    "mode": "http",
                    "api_url": self.fake.api_url,
                    "http_host": "127.0.0.1",
                    "http_port": 0,
                    "admin_ids": [self.admin],
                    "request_timeout_seconds": self.scale.client_timeout,
                },
            }
        )
        self.clock = clock
        app = await build_app(configured, clock)
        runtime = SlackRuntime(configured.slack, app.services)
        try:
            async with aiohttp.ClientSession() as session:
                await runtime.start()
                self.runtime, self.session = runtime, session
                yield app
        finally:
            await runtime.stop()
            await app.close()

    def storm(self, seed: int) -> None:
        s = self.scale
        self.fake.chaos(
            rate=RATE,
            seed=seed,
            kinds=FAULTS,
            hold=s.hold,
            max_retry_after=s.max_retry_after,
            max_delay=s.max_delay,
        )

    def calm(self) -> None:
        self.fake.calm()

    def injected(self) -> list[Any]:
        return list(self.fake.injected)

    def _bot(self, channel: str) -> Iterable[dict[str, Any]]:
        return (m for m in self.fake.messages[channel] if m.get("bot_id") == self.fake.bot_id)

    def questions(self) -> list[Post]:
        found = []
        for channel in self.channels:
            for m in self._bot(channel):
                metadata = m.get("metadata") or {}
                if metadata.get("event_type") != "prepbot_question":
                    continue
                payload = metadata["event_payload"]
                key = f"{payload['scenario']}:{payload['date']}"
                found.append(Post(channel, key, m["ts"], True))
        return found

    def key_of(self, channel: str, day: date, scenario: str) -> str:
        return f"{scenario}:{day.isoformat()}"

    def reveals(self, channel: str, thread: str) -> list[tuple[str, set[str]]]:
        return [
            (m["ts"], on_time_credits(json.dumps(m.get("blocks"), ensure_ascii=False)))
            for m in self._bot(channel)
            if m.get("thread_ts") == thread
            and (m.get("metadata") or {}).get("event_type") == "prepbot_reveal"
        ]

    def _next_ts(self) -> str:
        """Return a message ts at the simulated time, unique (Slack's ts is its post time)."""
        assert self.clock is not None
        return f"{int(self.clock.now().timestamp())}.{next(self._ts):06d}"

    async def _send(self, body: bytes, content_type: str, retry: int) -> int | None:
        assert self.runtime is not None
        assert self.session is not None
        headers = {"Content-Type": content_type, **sign(body, SECRET)}
        if retry:
            headers |= {"X-Slack-Retry-Num": str(retry), "X-Slack-Retry-Reason": "http_timeout"}
        url = f"http://127.0.0.1:{self.runtime.port}/slack/events"
        try:
            async with self.session.post(
                url, data=body, headers=headers, timeout=aiohttp.ClientTimeout(total=3)
            ) as response:
                await response.read()
                return response.status
        except (TimeoutError, aiohttp.ClientError):  # Slack gives an app 3 seconds
            return None

    async def reply(self, channel: str, thread: str, member: str, text: str) -> Ack:
        """Post a reply on Slack and deliver its event as Slack does, retries included."""
        ts = self._next_ts()
        self.fake.add_message(channel, user=member, text=text, thread_ts=thread, ts=ts)
        event = message_event(channel, member, text, ts, thread_ts=thread)
        body = json.dumps(event_callback(event, team_id=self.fake.team_id)).encode()
        gaps = self.scale.slack_retry_gaps
        for attempt in range(len(gaps) + 1):
            if await self._send(body, "application/json", attempt) == 200:
                return Ack(ts, True, time.monotonic(), attempt + 1)
            if attempt < len(gaps):
                await asyncio.sleep(gaps[attempt])
        return Ack(ts, False, time.monotonic(), len(gaps) + 1)

    async def command(self, channel: str, text: str) -> str:
        """Run ``/prep text`` as the admin; return what the bot answered (or why nothing)."""
        url = self.fake.response_url()
        rid = url.rsplit("/", 1)[1]
        form = slash_command(
            text, user_id=self.admin, user_name="ada", channel_id=channel, response_url=url
        )
        if (
            await self._send(urlencode(form).encode(), "application/x-www-form-urlencoded", 0)
            != 200
        ):
            return "not acknowledged"
        try:
            await self.fake.wait_for(
                lambda: any(r == rid for r, _ in self.fake.responses), self.scale.command_wait
            )
        except TimeoutError:
            return "no answer"
        return next(json.dumps(b, ensure_ascii=False) for r, b in self.fake.responses if r == rid)

    def alive(self) -> bool:
        return self.runtime is not None and self.runtime.port is not None


# -- Discord -------------------------------------------------------------------------------------

GUILD, OWNER = 100, 500


class DiscordWorld:
    """The real DiscordRuntime (gateway and REST) against the fake Discord."""

    name = "discord"
    channels: tuple[str, ...] = ("2100", "2101", "2102", "2103")
    members: tuple[str, ...] = ("601", "602", "603", "604")

    def __init__(self, fake: FakeDiscord, scale: Scale) -> None:
        self.fake, self.scale = fake, scale
        self.observer: Observer | None = None
        self.runtime: DiscordRuntime | None = None
        fake.add_guild(GUILD, "Soak Guild", owner_id=OWNER)
        for member in self.members:
            fake.add_member(GUILD, int(member), f"member{member}")
        for channel in self.channels:
            fake.add_text_channel(GUILD, int(channel), f"study-{channel}")

    def place(self, channel: str) -> Place:
        return Place("discord", str(GUILD), channel)

    @asynccontextmanager
    async def started(self, url: str, clock: ManualClock) -> AsyncIterator[App]:
        configured = Settings.model_validate(
            {
                "database": {"url": url},
                "discord": {
                    "token": self.fake.token,
                    "application_id": self.fake.application_id,
                    "api_url": self.fake.api_base,
                    "gateway_url": self.fake.gateway_url,
                    "guild_ids": [GUILD],
                },
            }
        )
        app = await build_app(configured, clock)
        runtime = DiscordRuntime(configured.discord, app.services)
        with dated_by(lambda: clock.now().timestamp()):
            try:
                await runtime.start(timeout=60)
                # discord.py sets no REST timeout of its own (aiohttp's default is 5 minutes):
                # give it the one the Slack client has in production.
                session: Any = getattr(runtime.client.http, "_HTTPClient__session")  # noqa: B009
                session._timeout = aiohttp.ClientTimeout(total=self.scale.client_timeout)
                self.runtime = runtime
                yield app
            finally:
                await runtime.stop()
                await app.close()

    def storm(self, seed: int) -> None:
        s = self.scale
        self.fake.chaos(
            rate=RATE,
            seed=seed,
            kinds=FAULTS,
            hold=s.hold,
            max_retry_after=float(s.max_retry_after),
            max_delay=s.max_delay,
        )

    def calm(self) -> None:
        self.fake.calm()

    def injected(self) -> list[Any]:
        return list(self.fake.injected)

    def _bot(self, channel: int) -> Iterable[dict[str, Any]]:
        """The bot's own messages in a channel or thread (not its answers to commands)."""
        bot = str(self.fake.bot_user_id)
        return (
            m
            for m in self.fake.messages.get(channel, [])
            if m["author"]["id"] == bot and m.get("type") == 0 and not m.get("webhook_id")
        )

    def questions(self) -> list[Post]:
        return [
            Post(channel, str(m.get("nonce")), m["id"], int(m["id"]) in self.fake.threads)
            for channel in self.channels
            for m in self._bot(int(channel))
            if not is_digest(m)
        ]

    def key_of(self, channel: str, day: date, scenario: str) -> str:
        return nonce("question", channel, day, scenario)

    def reveals(self, channel: str, thread: str) -> list[tuple[str, set[str]]]:
        return [(m["id"], on_time_credits(m["content"])) for m in self._bot(int(thread))]

    async def reply(self, channel: str, thread: str, member: str, text: str) -> Ack:
        """Post a member's message in the thread; Discord never resends it, so wait till stored."""
        assert self.observer is not None
        message = await self.fake.member_message(int(thread), int(member), text, guild_id=GUILD)
        deadline = time.monotonic() + self.scale.stored_within
        while time.monotonic() < deadline:
            if await self.observer.stored(message["id"]):
                return Ack(message["id"], True, time.monotonic(), 1)
            await asyncio.sleep(0.05)
        # Delivered and never stored: lost (Discord sends no event twice). Counted as acked
        # at the moment it was sent, so that it must be found.
        return Ack(message["id"], True, time.monotonic(), 1)

    async def command(self, channel: str, text: str) -> str:
        """Run ``/prep text`` as the server owner; return the bot's answer (or why none)."""
        interaction = await self.fake.slash_command(GUILD, int(channel), OWNER, f"prep {text}")
        try:
            await self.fake.wait_for(
                lambda: any(
                    r["kind"] == "followup" for r in self.fake.interaction_responses(interaction)
                ),
                self.scale.command_wait,
            )
        except TimeoutError:
            return "no answer (the deferral or the follow-up failed)"
        return json.dumps(self.fake.interaction_responses(interaction)[-1], ensure_ascii=False)

    def alive(self) -> bool:
        task = self.runtime._task if self.runtime is not None else None
        return task is not None and not task.done()


# -- the database, seen from outside --------------------------------------------------------------


@dataclass(frozen=True)
class RoundRow:
    id: int
    subscription_id: int
    channel: str
    day: date
    scenario: str
    status: str
    question: str | None
    reveal: str | None
    reveal_due: datetime
    claimed_at: datetime


def _utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


class Observer:
    """Reads the database on connections of its own, which the kills spare."""

    def __init__(self, url: str) -> None:
        options: dict[str, Any] = {}
        if make_url(url).get_backend_name() == "postgresql":
            options = {
                "connect_args": {"server_settings": {"application_name": OBSERVER}},
                "pool_pre_ping": True,
            }
        self.engine: AsyncEngine = create_async_engine(async_url(url), **options)

    async def rounds(self) -> list[RoundRow]:
        query = select(
            Round.id,
            Round.subscription_id,
            Subscription.channel_id,
            Round.local_date,
            Round.scenario_id,
            Round.status,
            Round.question_message_id,
            Round.reveal_message_id,
            Round.reveal_due_at,
            Round.claimed_at,
        ).join(Subscription, Subscription.id == Round.subscription_id)
        async with self.engine.connect() as connection:
            rows = (await connection.execute(query)).all()
        return [
            RoundRow(r[0], r[1], r[2], r[3], r[4], str(r[5]), r[6], r[7], _utc(r[8]), _utc(r[9]))
            for r in rows
        ]

    async def stored(self, message_id: str) -> bool:
        """Say whether a reply is stored (in a round, or held for a thread being posted)."""
        async with self.engine.connect() as connection:
            for table in (Reply.__table__, HeldReply.__table__):
                found = await connection.execute(
                    select(table.c.message_id).where(table.c.message_id == message_id)
                )
                if found.first() is not None:
                    return True
        return False

    async def answers(self) -> dict[tuple[int, str], bool]:
        """Return (round, member) -> on time, for every stored answer."""
        async with self.engine.connect() as connection:
            rows = await connection.execute(
                select(Answer.round_id, Member.external_id, Answer.on_time).join(
                    Member, Member.id == Answer.member_id
                )
            )
            return {(r, m): bool(on_time) for r, m, on_time in rows.all()}

    async def replies(self) -> dict[str, int]:
        """Return message id -> round, for every stored reply."""
        async with self.engine.connect() as connection:
            rows = await connection.execute(select(Reply.message_id, Reply.round_id))
            return {str(m): int(r) for m, r in rows.all()}

    async def held(self) -> int:
        async with self.engine.connect() as connection:
            return len((await connection.execute(select(HeldReply.message_id))).all())

    async def close(self) -> None:
        await self.engine.dispose()


# -- database kills -------------------------------------------------------------------------------


@dataclass
class Kills:
    rounds: int = 0
    connections: int = 0
    leadership: int = 0


async def kill_connections(
    url: str, leadership: Leadership, scale: Scale, rng: random.Random, kills: Kills
) -> None:
    """Kill the app's PostgreSQL connections every few seconds; one time in four the lead's too."""
    import asyncpg

    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    admin = await asyncpg.connect(dsn, server_settings={"application_name": KILLER})
    try:
        while True:
            await asyncio.sleep(rng.uniform(*scale.kill_every))
            lead = getattr(leadership, "_connection", None)
            spare = -1
            if lead is not None and rng.random() >= 0.25:
                spare = lead.get_server_pid()
            killed = await admin.fetch(
                "SELECT pid, pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                " AND application_name NOT IN ($1, $2) AND pid <> $3",
                OBSERVER,
                KILLER,
                spare,
            )
            kills.rounds += 1
            kills.connections += len(killed)
            if lead is not None and spare == -1:
                kills.leadership += 1
    finally:
        await admin.close()


# -- the driver -----------------------------------------------------------------------------------


@dataclass
class Sent:
    """One answer a member sent, and what became of it."""

    round_id: int
    member: str
    kind: str  # "on time", "racing" (sent as the reveal may begin) or "late"
    sent_at: float
    ack: Ack | None = None


@dataclass
class Plan:
    """What the members of one round do, and when its reveal showed on the platform."""

    round_id: int
    channel: str
    thread: str
    kinds: dict[str, str]
    on_time: list[asyncio.Task[None]] = field(default_factory=list)
    raced: bool = False
    revealed: float | None = None  # time.monotonic() when the bot's reveal was first seen


@dataclass
class Command:
    """One admin command: when it was sent and when it was answered (time.monotonic())."""

    channel: str
    verb: str
    issued: float
    answered: float = float("inf")


class LogTally(logging.Handler):
    """Counts what was logged, by message template; errors by logger and template."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.messages: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()

    def emit(self, record: logging.LogRecord) -> None:
        self.messages[str(record.msg)] += 1
        if record.levelno >= logging.ERROR:
            self.errors[f"{record.name}: {str(record.msg)[:80]}"] += 1


class Soak:
    """Drive one platform through the simulated month, as its members and admins would."""

    def __init__(
        self, world: World, app: App, clock: ManualClock, observer: Observer, s: Scale, seed: int
    ) -> None:
        self.world, self.app, self.clock, self.observer, self.scale = world, app, clock, observer, s
        self.rng = random.Random(seed)
        self.plans: dict[int, Plan] = {}
        self.seen: set[str] = set()  # question message ids already looked at
        self.sent: list[Sent] = []
        self.tasks: set[asyncio.Task[Any]] = set()
        self.commands: list[Command] = []
        self.outcomes: Counter[str] = Counter()
        self.problems_seen: set[str] = set()
        self.groups: dict[str, tuple[int, Schedule]] = {}  # channel -> subscription, schedule
        self.clock_log: list[tuple[datetime, float]] = [(clock.now(), time.monotonic())]
        self.gated: set[int] = set()
        self.raced: set[int] = set()  # rounds an admin's reveal-now may reveal before seen
        self.stuck: list[str] = []
        self._texts = itertools.count(1)

    def spawn(self, job: Awaitable[Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(job)
        task.set_name(name)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    def set_clock(self, moment: datetime) -> None:
        if moment > self.clock.now():
            self.clock.set(moment)
            self.clock_log.append((moment, time.monotonic()))

    def real_when(self, moment: datetime) -> float:
        """Return when (time.monotonic()) the clock first showed ``moment`` or later."""
        return next((real for sim, real in self.clock_log if sim >= moment), float("inf"))

    async def subscribe(self) -> None:
        for channel, spec in zip(self.world.channels, SCHEDULES, strict=True):
            command = parse_prep(f"subscribe {spec}")
            assert isinstance(command, Subscribe)
            await self.app.services.admin.subscribe(self.world.place(channel), command.change)
        async with self.app.db.transaction() as session:
            for group in (await session.scalars(select(Subscription))).all():
                self.groups[group.channel_id] = (group.id, schedule_of(group))

    def scheduled(self, end: datetime) -> list[tuple[datetime, str]]:
        """Return every scheduled post in [START, end): its time and channel."""
        return sorted(
            (schedule.post_time(day), channel)
            for channel, (_, schedule) in self.groups.items()
            for n in range((end - START).days + 1)
            if schedule.is_scheduled(day := START.date() + timedelta(days=n))
            and START <= schedule.post_time(day) < end
        )

    # Members.

    async def answer(self, sent: Sent, plan: Plan) -> None:
        text = f"answer {next(self._texts)} from {sent.member} ({sent.kind})"
        sent.ack = await self.world.reply(plan.channel, plan.thread, sent.member, text)

    def send(self, plan: Plan, member: str, kind: str) -> asyncio.Task[Any]:
        sent = Sent(plan.round_id, member, kind, time.monotonic())
        self.sent.append(sent)
        return self.spawn(self.answer(sent, plan), f"answer-{plan.round_id}-{member}")

    def plan(self, round_id: int, post: Post) -> None:
        """Decide what each member does with a question just seen; the on-time ones answer."""
        kinds = {}
        for member in self.world.members:
            draw = self.rng.random()
            kinds[member] = (
                "on time"
                if draw < 0.55
                else "racing"
                if draw < 0.7
                else "late"
                if draw < 0.85
                else "none"
            )
        plan = Plan(round_id, post.channel, post.message_id, kinds)
        self.plans[round_id] = plan
        plan.on_time = [self.send(plan, m, k) for m, k in kinds.items() if k == "on time"]
        if round_id in self.raced:
            self.race(plan)

    def race(self, plan: Plan) -> None:
        """Send the racing answers now, as the round's reveal may begin."""
        if not plan.raced:
            plan.raced = True
            for member, kind in plan.kinds.items():
                if kind == "racing":
                    self.send(plan, member, kind)

    async def watch(self) -> None:
        """Follow the platform: answer each new question, answer late after each reveal."""
        keys: dict[tuple[str, str], int] = {}
        while True:
            unknown = [
                p for p in self.world.questions() if p.open and p.message_id not in self.seen
            ]
            if any((p.channel, p.key) not in keys for p in unknown):
                for row in await self.observer.rounds():
                    keys[(row.channel, self.world.key_of(row.channel, row.day, row.scenario))] = (
                        row.id
                    )
            for post in unknown:
                round_id = keys.get((post.channel, post.key))
                if round_id is None:
                    continue  # its round is not committed yet: look again
                self.seen.add(post.message_id)
                if round_id not in self.plans:
                    self.plan(round_id, post)
            for plan in self.plans.values():
                if plan.revealed is None and self.world.reveals(plan.channel, plan.thread):
                    plan.revealed = time.monotonic()
                    for member, kind in plan.kinds.items():
                        if kind == "late":
                            self.send(plan, member, kind)
            for problem in self.app.services.ctx.problems.current():
                self.problems_seen.add(f"{problem.component}: {problem.message[:90]}")
            await asyncio.sleep(0.05)

    # Time.

    async def until(self, what: str, ready: Callable[[], Awaitable[bool]]) -> bool:
        """Wait (real time) until ``ready()``; after ``scale.wait`` seconds note it as stuck."""
        deadline = time.monotonic() + self.scale.wait
        while not await ready():
            if time.monotonic() > deadline:
                self.stuck.append(f"{what} (at {self.clock.now():%m-%d %H:%M})")
                return False
            await asyncio.sleep(0.05)
        return True

    async def status(self, round_id: int) -> str | None:
        return next((r.status for r in await self.observer.rounds() if r.id == round_id), None)

    async def before_reveals(self, upto: datetime) -> None:
        """Before the clock reaches reveal times: the rounds are posted and their on-time
        answers acknowledged (a real day gives a slow post hours), racing answers sent."""
        for row in await self.observer.rounds():
            if row.id in self.gated or row.reveal_due > upto:
                continue
            self.gated.add(row.id)
            if row.reveal_due <= self.clock.now():
                continue  # posted by post-now after its reveal time: revealed at once

            async def posted(round_id: int = row.id) -> bool:
                return await self.status(round_id) != RoundStatus.CLAIMED

            async def seen(round_id: int = row.id) -> bool:
                return round_id in self.plans or await self.status(round_id) is None

            if not await self.until(f"round {row.id} posted", posted):
                continue
            if not await self.until(f"round {row.id} seen on the platform", seen):
                continue
            plan = self.plans.get(row.id)
            if plan is None:
                continue  # dropped (its channel failed); nothing to answer
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.scale.wait):
                    await asyncio.gather(*plan.on_time)
            self.race(plan)

    async def claimed(self, channel: str, day: date) -> None:
        """Wait until the scheduler claimed a scheduled round, so no grace runs out."""
        subscription = self.groups[channel][0]

        async def exists() -> bool:
            return any(
                r.subscription_id == subscription and r.day == day
                for r in await self.observer.rounds()
            )

        await self.until(f"the {day} round of {channel} claimed", exists)

    async def admin(self, command: Command) -> None:
        outcome = (await self.world.command(command.channel, command.verb)).lower()
        command.answered = time.monotonic()
        words = re.sub(r"[^a-z ]+", "", outcome.replace("'", ""))
        summary = next((w for w in COMMAND_OUTCOMES if w in words), words[:50])
        self.outcomes[f"{command.verb}: {summary}"] += 1

    async def admin_action(self) -> None:
        """Run post-now or reveal-now in a random group, as an admin might at any moment."""
        channel = self.rng.choice(self.world.channels)
        verb = "post-now" if self.rng.random() < 0.5 else "reveal-now"
        if verb == "reveal-now":
            subscription = self.groups[channel][0]
            for row in await self.observer.rounds():
                if row.subscription_id == subscription and row.status != RoundStatus.REVEALED:
                    self.raced.add(row.id)
                    if row.id in self.plans:
                        self.race(self.plans[row.id])
        command = Command(channel, verb, time.monotonic())
        self.commands.append(command)
        self.spawn(self.admin(command), f"{verb}-{channel}")

    async def run(self, end: datetime) -> None:
        """Move the clock from moment to moment until ``end``, then let every round finish.

        The moments: every scheduled post, every reveal time, and a few random moments a day
        for an admin command (none on the last day, so every reveal time falls before ``end``).
        """
        posts = self.scheduled(end)
        last_day = end - timedelta(days=1)
        admin_moments = sorted(
            START + timedelta(days=n, seconds=self.rng.randrange(86_400))
            for n in range((end - START).days - 1)
            for _ in range(ADMIN_ACTIONS_PER_DAY)
        )
        while posts or admin_moments:
            now = self.clock.now()
            reveals = [r.reveal_due for r in await self.observer.rounds() if r.reveal_due > now]
            target = min([*(t for t, _ in posts[:1]), *admin_moments[:1], *reveals])
            await self.before_reveals(target)
            self.set_clock(target)
            if posts and posts[0][0] == target:
                _, channel = posts.pop(0)
                await self.claimed(channel, self.groups[channel][1].local_date(target))
            if admin_moments and admin_moments[0] == target:
                admin_moments.pop(0)
                if target < last_day:
                    await self.admin_action()
        await self.before_reveals(end)
        self.set_clock(end)

        async def settled() -> bool:
            rows = await self.observer.rounds()
            return all(r.status == RoundStatus.REVEALED and r.reveal for r in rows) and all(
                r.id not in self.plans or self.plans[r.id].revealed is not None for r in rows
            )

        await self.until("every round revealed on the platform", settled)
        if self.tasks:  # late answers, admin commands still waiting for their answer
            await asyncio.wait(list(self.tasks), timeout=self.scale.wait)

    def trigger(self, row: RoundRow) -> float:
        """Return the earliest moment (time.monotonic()) the round's reveal could begin.

        Its reveal time passing on the clock (after the round was claimed), or a reveal-now in
        its channel answered after the round was claimed. An answer acknowledged before it was
        on time for certain.
        """
        claimed = self.real_when(row.claimed_at)
        earliest = self.real_when(max(row.claimed_at, row.reveal_due))
        for command in self.commands:
            if (
                command.verb == "reveal-now"
                and command.channel == row.channel
                and command.answered >= claimed
            ):
                earliest = min(earliest, command.issued)
        return earliest


COMMAND_OUTCOMES = (
    "posted todays question",
    "already posted",
    "being posted",
    "did not confirm",
    "no open question",
    "revealed",
    "could not",
    "something went wrong",
    "no answer",
    "not acknowledged",
)


# -- the soak -------------------------------------------------------------------------------------


@dataclass
class Outcome:
    """The numbers of one soak run."""

    platform: str
    database: str
    scale: str
    days: int
    rounds: int = 0
    rounds_scheduled: int = 0
    posts: int = 0
    reveals: int = 0
    duplicate_posts: int = 0
    duplicate_reveals: int = 0
    unposted: int = 0
    unrevealed: int = 0
    answers_sent: int = 0
    answers_acked: int = 0
    acked_before_reveal: int = 0
    acked_racing: int = 0
    acked_after_reveal: int = 0
    unacknowledged: int = 0
    missing_answers: list[str] = field(default_factory=list)
    missing_credits: list[str] = field(default_factory=list)
    wrong_credits: list[str] = field(default_factory=list)
    held_left: int = 0
    faults: dict[str, int] = field(default_factory=dict)
    slow_seconds: float = 0.0
    carried_out_unanswered: int = 0
    db_kills: int = 0
    connections_killed: int = 0
    leadership_kills: int = 0
    lead_lost: int = 0
    lead_taken: int = 0
    leading_at_end: bool = False
    tick_failures: int = 0
    repairs: dict[str, int] = field(default_factory=dict)
    commands: dict[str, int] = field(default_factory=dict)
    problems_reported: list[str] = field(default_factory=list)
    errors_logged: dict[str, int] = field(default_factory=dict)
    stuck: list[str] = field(default_factory=list)
    scheduler_running: bool = False
    platform_connected: bool = False
    wall_seconds: float = 0.0


REPAIR_LOGS = {
    "claimed round repaired": "round %s was claimed by a process that is gone; repairing",
    "post found, kept": "round %s was already posted (message %s); keeping that post",
    "reveal repaired": "the reveal of round %s was never sent; repairing",
    "reveal found, kept": "the reveal of round %s was already sent (message %s); keeping it",
    "posted twice": "round %s was posted twice; replies in message %s count for it too",
    "lease renewal failed": "could not renew the lease of round %s: %r",
    "scheduled work failed": "scheduled work failed: %r",
    "held replies adopted": "%d replies held for thread %s joined their round",
}


async def soak(world: World, url: str) -> Outcome:
    """Run one simulated month on one platform and database; return its numbers."""
    s = scale()
    seed = int(os.environ.get(SEED_ENV, "12"))
    began = time.monotonic()
    database = "sqlite" if url.startswith("sqlite") else "postgresql"
    outcome = Outcome(world.name, database, s.name, s.days)
    clock = ManualClock(START)
    tally = LogTally()
    prepbot_log = logging.getLogger("prepbot")
    level = prepbot_log.level
    prepbot_log.setLevel(logging.INFO)
    logging.getLogger().addHandler(tally)
    log_file: logging.Handler | None = None
    if os.environ.get(LOG_ENV):
        log_file = logging.FileHandler(os.environ[LOG_ENV], encoding="utf-8")
        log_file.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
        logging.getLogger().addHandler(log_file)
    observer = Observer(url)
    world.observer = observer
    try:
        async with world.started(url, clock) as app:
            app.services.ctx.lease = LEASE  # renewed every second while a call is in flight
            driver = Soak(world, app, clock, observer, s, seed)
            await driver.subscribe()
            end = START + timedelta(days=s.days)
            leadership = leadership_for(url)
            scheduler = RoundScheduler(
                app.services, grace=timedelta(hours=2), safety_interval=timedelta(seconds=5)
            )
            stop = asyncio.Event()
            scheduling = asyncio.create_task(
                run_scheduling(
                    scheduler,
                    leadership,
                    stop,
                    poll=timedelta(seconds=0.2),
                    max_backoff=timedelta(seconds=5),
                ),
                name="scheduling",
            )
            kills = Kills()
            killer = None
            if isinstance(leadership, PostgresLeadership):
                killer = asyncio.create_task(
                    kill_connections(url, leadership, s, random.Random(seed), kills)
                )
            watcher = asyncio.create_task(driver.watch())
            world.storm(seed)
            try:
                await driver.run(end)
            finally:
                world.calm()
                for task in (killer, watcher):
                    if task is not None:
                        task.cancel()
                        with contextlib.suppress(asyncio.CancelledError):
                            await task
                outcome.scheduler_running = not scheduling.done()
                outcome.platform_connected = world.alive()
                for _ in range(100):  # the storm is over: a lead the last kill took comes back
                    if scheduler.leading:
                        break
                    await asyncio.sleep(0.1)
                outcome.leading_at_end = scheduler.leading
                stop.set()
                await scheduling
                for task in list(driver.tasks):
                    task.cancel()
            outcome.wall_seconds = round(time.monotonic() - began, 1)
            await check(outcome, driver, world, observer)
            outcome.db_kills, outcome.connections_killed = kills.rounds, kills.connections
            outcome.leadership_kills = kills.leadership
            outcome.tick_failures = int(app.services.ctx.metrics.tick_failures._value.get())
    finally:
        logging.getLogger().removeHandler(tally)
        if log_file is not None:
            logging.getLogger().removeHandler(log_file)
            log_file.close()
        prepbot_log.setLevel(level)
        await observer.close()
    messages = tally.messages
    outcome.lead_lost = messages["lost the scheduling lead; standing by"]
    outcome.lead_taken = messages["this process now schedules rounds (%s)"]
    outcome.repairs = {name: messages[log] for name, log in REPAIR_LOGS.items() if messages[log]}
    outcome.errors_logged = dict(tally.errors.most_common(12))
    return outcome


async def check(outcome: Outcome, driver: Soak, world: World, observer: Observer) -> None:
    """Count what the members saw on the platform and what the database kept."""
    end = START + timedelta(days=driver.scale.days)
    rows = {r.id: r for r in await observer.rounds()}
    scheduled = {(c, driver.groups[c][1].local_date(t)) for t, c in driver.scheduled(end)}
    outcome.rounds, outcome.rounds_scheduled = len(rows), len(scheduled)
    outcome.unposted = len(scheduled - {(r.channel, r.day) for r in rows.values()})
    injected = world.injected()
    outcome.faults = dict(Counter(f.kind for f in injected))
    outcome.slow_seconds = round(sum(f.delay for f in injected), 1)
    outcome.carried_out_unanswered = sum(
        1
        for f in injected
        if f.processed and (f.kind == "timeout" or f.delay > driver.scale.client_timeout)
    )
    outcome.commands = dict(driver.outcomes)
    outcome.problems_reported = sorted(driver.problems_seen)
    outcome.stuck = driver.stuck
    outcome.held_left = await observer.held()

    posts = Counter((p.channel, p.key) for p in world.questions())
    outcome.posts = sum(posts.values())
    credits: dict[int, set[str]] = {}
    for row in rows.values():
        key = (row.channel, world.key_of(row.channel, row.day, row.scenario))
        shown = posts.pop(key, 0)
        outcome.duplicate_posts += max(shown - 1, 0)
        if row.status != RoundStatus.REVEALED or not shown or row.question is None:
            outcome.unposted += not shown
            outcome.unrevealed += 1
            continue
        reveals = world.reveals(row.channel, row.question)
        outcome.reveals += len(reveals)
        outcome.duplicate_reveals += max(len(reveals) - 1, 0)
        if not reveals or reveals[0][0] != row.reveal:
            outcome.unrevealed += 1
        if reveals:
            credits[row.id] = reveals[0][1]
    outcome.duplicate_posts += sum(posts.values())  # posts of no round at all

    answers = await observer.answers()
    replies = await observer.replies()
    on_time_by_round: dict[int, set[str]] = {}
    for (round_id, member), on_time in answers.items():
        if on_time:
            on_time_by_round.setdefault(round_id, set()).add(member)
    outcome.answers_sent = len(driver.sent)
    for sent in driver.sent:
        if sent.ack is None or not sent.ack.acked:
            outcome.unacknowledged += 1
            continue
        outcome.answers_acked += 1
        plan, row = driver.plans[sent.round_id], rows[sent.round_id]
        what = (
            f"round {row.id} ({row.channel} {row.day}) {sent.member} {sent.kind} "
            f"message {sent.ack.message_id} stored in round {replies.get(sent.ack.message_id)}"
        )
        if replies.get(sent.ack.message_id) != row.id or (row.id, sent.member) not in answers:
            outcome.missing_answers.append(what)
            continue
        on_time = answers[(row.id, sent.member)]
        credited = sent.member in credits.get(row.id, set())
        if sent.ack.at < driver.trigger(row):
            outcome.acked_before_reveal += 1
            if not (on_time and credited):
                outcome.missing_credits.append(f"{what}, on time {on_time}, credited {credited}")
        elif plan.revealed is not None and sent.sent_at > plan.revealed:
            outcome.acked_after_reveal += 1
            if on_time or credited:
                outcome.wrong_credits.append(what)
        else:
            outcome.acked_racing += 1  # either, as long as the reveal says what is stored
    for round_id, credited_ids in credits.items():
        if credited_ids != on_time_by_round.get(round_id, set()):
            outcome.wrong_credits.append(
                f"round {round_id}: credited {sorted(credited_ids)}, "
                f"on time {sorted(on_time_by_round.get(round_id, set()))}"
            )


def report(outcome: Outcome) -> str:
    return json.dumps(outcome.__dict__, indent=1, default=str)


def assert_sound(outcome: Outcome) -> None:
    """Assert the issue's guarantees on one run's numbers."""
    text = report(outcome)
    assert outcome.scheduler_running, f"the scheduling loop exited\n{text}"
    assert outcome.platform_connected, f"the platform connection ended\n{text}"
    assert outcome.duplicate_posts == outcome.duplicate_reveals == 0, text
    assert outcome.unposted == outcome.unrevealed == 0, text
    assert outcome.posts == outcome.reveals == outcome.rounds >= outcome.rounds_scheduled, text
    assert not outcome.missing_answers, text
    assert not outcome.missing_credits, text
    assert not outcome.wrong_credits, text
    assert outcome.held_left == 0, text
    assert not outcome.stuck, text
    assert outcome.acked_before_reveal > 0, text
    assert outcome.acked_after_reveal > 0, text
    kinds = [kind for kind in FAULTS if outcome.faults.get(kind, 0) > 0]
    assert len(kinds) >= (len(FAULTS) if outcome.scale == "full" else 3), text  # 6 days: ~60 calls
    if outcome.database == "postgresql":
        assert outcome.db_kills > 0, text
        assert outcome.leadership_kills > 0, text
        assert outcome.lead_lost > 0, text  # the lead's connection died and was noticed
        assert outcome.leading_at_end, text  # and the lead was taken again


@pytest.fixture
async def slack_world() -> AsyncIterator[SlackWorld]:
    async with FakeSlack() as fake:
        yield SlackWorld(fake, scale())


@pytest.fixture
async def discord_world() -> AsyncIterator[DiscordWorld]:
    async with FakeDiscord() as fake:
        with fake.patch_discord():
            yield DiscordWorld(fake, scale())


@pytest.mark.slow(seconds=55)
async def test_slack_soak(database_url: str, slack_world: SlackWorld):
    outcome = await soak(slack_world, database_url)
    print(f"\nsoak result: {report(outcome)}")
    assert_sound(outcome)


@pytest.mark.slow(seconds=65)
async def test_discord_soak(database_url: str, discord_world: DiscordWorld):
    outcome = await soak(discord_world, database_url)
    print(f"\nsoak result: {report(outcome)}")
    assert_sound(outcome)
