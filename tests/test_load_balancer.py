"""Two prepbot replicas behind a real HAProxy, one SIGKILLed while Slack's answers stream in.

What runs is the deployment of docs/replicas.md on loopback: two ``prepbot run`` processes in
Slack HTTP mode on one PostgreSQL database (each with its real ``SlackRuntime`` endpoint and
/healthz), Debian's ``haproxy`` in front of them with deploy/haproxy.cfg itself (only the
addresses differ, through the environment variables the file reads), and the fake Slack Web
API of tests/slack_fake.py for the bots' own calls. Several clients play Slack's Events API:
signed thread replies to an open round, each sent again (``X-Slack-Retry-Num`` 1..3) when it is
not acknowledged with a 2xx within 3 s, as Slack does (Slack's pauses between tries, 1 and 5
minutes, are shortened). Mid-stream one replica is frozen for a moment, so requests are inside
it, then SIGKILLed; it is started again later, and then the other one is frozen for longer
than HAProxy's ``timeout server`` and let go. Asserted: every event is acknowledged; every
reply is stored exactly once with its text; HAProxy's retries carried requests that were
inside the killed replica and requests the frozen one sat on, each acknowledged within Slack's
3 s; the survivor kept acknowledging while the other was down; the restarted replica serves
again. PostgreSQL only (replicas need it). In CI a missing haproxy fails; locally it skips.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest

from tests.fuzzing import in_ci
from tests.loopback import free_port
from tests.slack_fake import FakeSlack, event_callback, message_event, sign

REPO = Path(__file__).resolve().parents[1]
HAPROXY_CFG = REPO / "deploy" / "haproxy.cfg"
HAPROXY_INSTALL = "apt-get install -y --no-install-recommends haproxy"

SECRET = "l04dbal4nc3rs1gn1ngs3cr3t"
TEAM = "T0001"  # FakeSlack's
CHANNEL = "C0REPLICAS"
PATH = "/slack/events"
MEMBERS = [f"UL{n:04d}" for n in range(1, 41)]
ANSWER = "Shard the optimizer state and overlap the all-reduce with the backward pass"

CLIENTS = 8  # concurrent "Slack" connections
PACE = 0.1  # seconds each client waits between two events (~60 events/s in all)
SLACK_TIMEOUT = 3.0  # Slack's patience for an acknowledgement
SLACK_RETRY_PAUSES = (0.2, 0.5, 1.0)  # Slack's are about 0 s, 1 min and 5 min
STARTUP = 90.0  # seconds a replica or HAProxy may take to start on a loaded CI machine
STALL = 2.0  # longest pause between acknowledgements allowed while one replica is down

LOG_LINE = re.compile(
    r"\[(?P<accepted>\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d\.\d{3})\] \S+ (?P<backend>[\w-]+)/"
    r"(?P<server>\S+) -?\d+/-?\d+/-?\d+/-?\d+/\+?(?P<total>-?\d+) (?P<status>-?\d+) .*? "
    r"\d+/\d+/\d+/\d+/(?P<redispatched>\+?)(?P<retries>\d+) \d+/\d+ \{(?P<slack>[^}]*)\}"
)


def haproxy_executable() -> str:
    """Return HAProxy's path; without it fail in CI (``CI=true``), else skip."""
    found = shutil.which("haproxy")
    if found is not None:
        return found
    message = f"haproxy is not installed: {HAPROXY_INSTALL}"
    if in_ci():
        pytest.fail(message)
    pytest.skip(message)


def haproxy_settings() -> dict[str, list[str]]:
    """Return deploy/haproxy.cfg's settings by name: "retries": ["3"], "timeout server": ["1s"].

    Two-word names for ``option`` and ``timeout``; a setting given twice keeps its last value.
    """
    settings: dict[str, list[str]] = {}
    for line in HAPROXY_CFG.read_text(encoding="utf-8").splitlines():
        words = line.split("#")[0].split()
        if words:
            size = 2 if words[0] in {"option", "timeout"} else 1
            settings[" ".join(words[:size])] = words[size:]
    return settings


def haproxy_seconds(value: str) -> float:
    """Turn an HAProxy time ('500ms', '1s', '2m', or a bare number of milliseconds) into seconds."""
    found = re.fullmatch(r"(\d+)(us|ms|s|m|h|d)?", value)
    assert found is not None, f"not an HAProxy time: {value!r}"
    scale = {"us": 1e-6, "ms": 1e-3, None: 1e-3, "s": 1, "m": 60, "h": 3600, "d": 86400}
    return int(found[1]) * scale[found[2]]


def end_process(process: subprocess.Popen[bytes], grace: float) -> None:
    """Ask a process to stop (SIGTERM); kill it if it has not within ``grace`` seconds."""
    process.terminate()
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


def tail(path: Path, lines: int = 30) -> str:
    if not path.exists():
        return f"({path.name}: no output)"
    return f"--- {path.name}\n" + "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


# -- the processes -----------------------------------------------------------------------------


@dataclass
class Replica:
    """One ``prepbot run`` in Slack HTTP mode; its Slack and health ports stay across restarts."""

    name: str
    folder: Path
    env: dict[str, str]
    events_port: int = field(default_factory=free_port)
    health_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def log(self) -> Path:
        return self.folder / f"{self.name}-{self.starts}.log"

    def start(self) -> None:
        self.starts += 1
        env = self.env | {
            "PREPBOT_SLACK__HTTP_PORT": str(self.events_port),
            "PREPBOT_HTTP__PORT": str(self.health_port),
        }
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                ["prepbot", "run"],
                env=env,
                cwd=self.folder,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    async def wait_serving(self, session: aiohttp.ClientSession) -> None:
        """Wait until /healthz says the database and Slack's endpoint are up."""
        deadline = time.monotonic() + STARTUP
        url = f"http://127.0.0.1:{self.health_port}/healthz"
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                pytest.fail(f"{self.name} exited with {self.process.returncode}\n{tail(self.log)}")
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with session.get(url, timeout=aiohttp.ClientTimeout(total=2)) as response:
                    checks = (await response.json())["checks"]
                    if response.status == 200 and checks["slack"]["ok"]:
                        return
            await asyncio.sleep(0.2)
        pytest.fail(f"{self.name} did not serve within {STARTUP:.0f} s\n{tail(self.log)}")

    def signal(self, signum: signal.Signals) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def kill(self) -> None:
        """SIGKILL it and reap it."""
        self.signal(signal.SIGKILL)
        assert self.process is not None
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGCONT)  # a frozen one cannot handle SIGTERM
        end_process(self.process, grace=20)


@dataclass
class LoadBalancer:
    """HAProxy with deploy/haproxy.cfg, its addresses set through the file's variables."""

    folder: Path
    replicas: list[Replica]
    port: int = field(default_factory=free_port)
    stats_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def log(self) -> Path:
        return self.folder / "haproxy.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{PATH}"

    def start(self) -> None:
        env = {
            **os.environ,
            "LB_BIND": f"127.0.0.1:{self.port}",
            "LB_STATS_BIND": f"127.0.0.1:{self.stats_port}",
            "LB_DNS": f"127.0.0.1:{free_port()}",  # unused for addresses; loopback regardless
        }
        for n, replica in enumerate(self.replicas, 1):
            env[f"LB_REPLICA{n}"] = f"127.0.0.1:{replica.events_port}"
            env[f"LB_REPLICA{n}_HEALTH_PORT"] = str(replica.health_port)
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [haproxy_executable(), "-db", "-f", str(HAPROXY_CFG)],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    async def stats(self, session: aiohttp.ClientSession) -> dict[str, dict[str, str]]:
        """Return HAProxy's statistics of the prepbot backend, by server (and BACKEND)."""
        url = f"http://127.0.0.1:{self.stats_port}/stats;csv"
        async with session.get(url, timeout=aiohttp.ClientTimeout(total=5)) as response:
            text = await response.text()
        rows = csv.DictReader(io.StringIO(text.removeprefix("# ")))
        return {row["svname"]: row for row in rows if row["pxname"] == "prepbot"}

    async def wait_status(
        self, session: aiohttp.ClientSession, server: str, status: str, seconds: float = STARTUP
    ) -> float:
        """Wait until a server has a status in HAProxy's eyes; return when (time.time())."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                pytest.fail(f"haproxy exited with {self.process.returncode}\n{tail(self.log)}")
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                if (await self.stats(session))[server]["status"].startswith(status):
                    return time.time()
            await asyncio.sleep(0.05)
        pytest.fail(f"haproxy never saw {server} {status}\n{tail(self.log)}")

    async def wait_busy(self, session: aiohttp.ClientSession, server: str) -> None:
        """Wait until HAProxy has a request waiting on a server."""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if int((await self.stats(session))[server]["scur"]) > 0:
                return
            await asyncio.sleep(0.05)
        pytest.fail(f"no request reached {server}\n{tail(self.log)}")

    def requests(self) -> list[Logged]:
        """Return the requests HAProxy logged, in the order it finished them."""
        found = []
        for line in self.log.read_text(errors="replace").splitlines():
            match = LOG_LINE.search(line)
            if match is not None:
                found.append(Logged.parse(match))
        return found

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            end_process(self.process, grace=10)


@dataclass(frozen=True)
class Logged:
    """One request in HAProxy's log: when it arrived, who answered, how, after how many retries."""

    accepted: float  # time.time() of its arrival
    server: str
    status: int
    seconds: float  # from arrival to the end of the response
    retries: int
    redispatched: bool
    slack_retry: str  # X-Slack-Retry-Num, "" on a first delivery

    @classmethod
    def parse(cls, match: re.Match[str]) -> Logged:
        accepted = datetime.strptime(match["accepted"], "%d/%b/%Y:%H:%M:%S.%f")  # local time
        return cls(
            accepted=accepted.timestamp(),
            server=match["server"],
            status=int(match["status"]),
            seconds=int(match["total"]) / 1000,
            retries=int(match["retries"]),
            redispatched=bool(match["redispatched"]),
            slack_retry=match["slack"].split("|")[0],
        )


# -- Slack, delivering events -----------------------------------------------------------------


@dataclass
class Delivery:
    """One reply event as Slack delivers it: each try's outcome, and the acknowledgement."""

    ts: str
    member: str
    text: str
    tries: list[tuple[float, int | str]] = field(default_factory=list)  # (sent, status or why)
    acked_at: float | None = None


class Slack:
    """Events API deliveries through the load balancer, retried as Slack retries them."""

    def __init__(self, url: str, thread: str) -> None:
        self.url = url
        self.thread = thread
        self.deliveries: list[Delivery] = []
        self._numbers = itertools.count(1)
        self._micros = time.time_ns() // 1000

    def _next(self) -> tuple[Delivery, bytes]:
        n = next(self._numbers)
        self._micros += 1
        ts = f"{self._micros // 1_000_000}.{self._micros % 1_000_000:06d}"
        member = MEMBERS[n % len(MEMBERS)]
        text = f"{ANSWER} (reply {n} by {member})"
        event = message_event(CHANNEL, member, text, ts, thread_ts=self.thread, team=TEAM)
        delivery = Delivery(ts, member, text)
        self.deliveries.append(delivery)
        return delivery, json.dumps(event_callback(event, team_id=TEAM)).encode()

    async def _try(
        self, session: aiohttp.ClientSession, body: bytes, retry: int, why: str
    ) -> int | str:
        """Send one try (signed now, as Slack signs each); return its status or what failed."""
        headers = {"Content-Type": "application/json", **sign(body, SECRET)}
        if retry:
            headers |= {"X-Slack-Retry-Num": str(retry), "X-Slack-Retry-Reason": why}
        try:
            async with session.post(
                self.url,
                data=body,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=SLACK_TIMEOUT),
            ) as response:
                await response.read()
                return response.status
        except TimeoutError:
            return "http_timeout"
        except aiohttp.ClientError:
            return "connection_failed"

    async def deliver(self, session: aiohttp.ClientSession) -> None:
        """Send the next new reply until it is acknowledged, at most 1 + 3 times."""
        delivery, body = self._next()
        why = ""
        for retry in range(len(SLACK_RETRY_PAUSES) + 1):
            sent = time.time()
            outcome = await self._try(session, body, retry, why)
            delivery.tries.append((sent, outcome))
            if isinstance(outcome, int) and 200 <= outcome < 300:
                delivery.acked_at = time.time()
                return
            if retry < len(SLACK_RETRY_PAUSES):
                why = outcome if isinstance(outcome, str) else "http_error"
                await asyncio.sleep(SLACK_RETRY_PAUSES[retry])

    async def client(self, stop: asyncio.Event) -> None:
        """One connection's worth of Slack: a new reply every PACE seconds until told to stop."""
        async with aiohttp.ClientSession() as session:
            while not stop.is_set():
                await self.deliver(session)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), PACE)


# -- the world ---------------------------------------------------------------------------------


async def open_round(database_url: str, api_url: str) -> str:
    """Make CHANNEL a study group with today's question posted; return the question's ts.

    Its reveal is 2 h away and its next post 3 h away, so neither replica's scheduler does
    anything to it while the test runs (whatever the time of day).
    """
    from prepbot.app import build_app
    from prepbot.core.clock import SystemClock
    from prepbot.core.commands import Subscribe, parse_prep
    from prepbot.core.events import Place
    from prepbot.platforms.slack.adapter import SlackRuntime
    from prepbot.settings import Settings

    settings = Settings.model_validate(
        {
            "database": {"url": database_url},
            "slack": {
                "bot_token": "xoxb-test",
                "signing_secret": SECRET,
                "mode": "http",
                "api_url": api_url,
                "http_host": "127.0.0.1",
                "http_port": 0,
            },
        }
    )
    post_at = (datetime.now(UTC) + timedelta(hours=3)).strftime("%H:%M")
    command = parse_prep(f"subscribe {post_at} UTC daily reveal=+2h")
    assert isinstance(command, Subscribe)
    app = await build_app(settings, SystemClock())
    try:
        group = await app.services.admin.subscribe(Place("slack", TEAM, CHANNEL), command.change)
        runtime = SlackRuntime(settings.slack, app.services)  # registers the Slack platform
        await runtime.start()
        try:
            outcome = await app.services.rounds.post_round(group.id, datetime.now(UTC).date())
        finally:
            await runtime.stop()
    finally:
        await app.close()
    assert outcome is not None
    assert outcome.round.question_message_id is not None
    return outcome.round.question_message_id


async def stored_replies(database_url: str) -> list[tuple[str, str]]:
    """Return every stored reply as (message id, text), duplicates included."""
    import asyncpg
    from sqlalchemy.engine import make_url

    plain = make_url(database_url).set(drivername="postgresql").render_as_string(False)
    connection = await asyncpg.connect(plain)
    try:
        rows = await connection.fetch("SELECT message_id, text FROM replies")
    finally:
        await connection.close()
    return [(row["message_id"], row["text"]) for row in rows]


@pytest.fixture
async def slack_api() -> AsyncIterator[FakeSlack]:
    async with FakeSlack(team_id=TEAM) as fake:
        for n, member in enumerate(MEMBERS, 1):
            fake.add_user(member, f"member {n}")
        yield fake


@pytest.fixture
def cluster(postgres_url: str, slack_api: FakeSlack, tmp_path: Path) -> Iterator[LoadBalancer]:
    """Two replicas (not started) behind HAProxy (not started); everything stopped after."""
    haproxy_executable()
    from tests.conftest import _truncate

    _truncate(postgres_url)
    env = {key: value for key, value in os.environ.items() if not key.startswith("PREPBOT_")}
    env |= {
        "PREPBOT_DATABASE__URL": postgres_url,
        "PREPBOT_REQUIRE_PLATFORM": "true",
        "PREPBOT_SLACK__BOT_TOKEN": "xoxb-test",
        "PREPBOT_SLACK__SIGNING_SECRET": SECRET,
        "PREPBOT_SLACK__MODE": "http",
        "PREPBOT_SLACK__API_URL": slack_api.api_url,
        "PREPBOT_SLACK__HTTP_HOST": "127.0.0.1",
        "PREPBOT_SLACK__HTTP_PATH": PATH,
        "PREPBOT_HTTP__HOST": "127.0.0.1",
    }
    replicas = [Replica(f"replica{n}", tmp_path, env) for n in (1, 2)]
    balancer = LoadBalancer(tmp_path, replicas)
    try:
        yield balancer
    finally:
        balancer.stop()
        for replica in replicas:
            replica.stop()


# -- the test ----------------------------------------------------------------------------------


async def test_answers_survive_a_replica_killed_behind_haproxy(
    cluster: LoadBalancer, slack_api: FakeSlack, postgres_url: str
):
    started = time.monotonic()
    first, second = cluster.replicas
    timeout_server = haproxy_seconds(haproxy_settings()["timeout server"][0])
    thread = await open_round(postgres_url, slack_api.api_url)
    async with aiohttp.ClientSession() as session:
        for replica in cluster.replicas:
            replica.start()
        await asyncio.gather(*(replica.wait_serving(session) for replica in cluster.replicas))
        cluster.start()
        for replica in cluster.replicas:
            await cluster.wait_status(session, replica.name, "UP")

        slack = Slack(cluster.url, thread)
        stop = asyncio.Event()
        clients = [asyncio.create_task(slack.client(stop)) for _ in range(CLIENTS)]
        try:
            await asyncio.sleep(1.5)  # both replicas serve

            # Freeze replica 1 until requests are inside it (HAProxy counts them), then
            # SIGKILL it: they are lost with it unless HAProxy sends them elsewhere.
            first.signal(signal.SIGSTOP)
            await asyncio.sleep(0.4)
            await cluster.wait_busy(session, first.name)
            killed_at = time.time()
            first.kill()
            down_at = await cluster.wait_status(session, first.name, "DOWN", seconds=10)
            await asyncio.sleep(1.0)  # replica 2 alone

            # Start replica 1 again; once HAProxy has it back, both serve.
            restarted_at = time.time()
            first.start()
            await first.wait_serving(session)
            back_at = await cluster.wait_status(session, first.name, "UP")
            await asyncio.sleep(1.0)

            # Freeze replica 2 longer than `timeout server`, then let it go on.
            frozen_at = time.time()
            second.signal(signal.SIGSTOP)
            await asyncio.sleep(timeout_server + 0.5)
            second.signal(signal.SIGCONT)
            thawed_at = time.time()
            await asyncio.sleep(1.0)
        finally:
            stop.set()
            await asyncio.gather(*clients)
        await asyncio.sleep(0.5)  # the thawed replica finishes what it held (replays)
        stats = await cluster.stats(session)

    deliveries = slack.deliveries
    logged = cluster.requests()
    context = "\n".join([tail(cluster.log, 15), *(tail(r.log, 15) for r in cluster.replicas)])

    # 1. Slack got an acknowledgement for every event, and no reply is lost or doubled.
    assert len(deliveries) >= 300, context
    unacked = [d.ts for d in deliveries if d.acked_at is None]
    assert not unacked, f"{len(unacked)} events never acknowledged\n{context}"
    stored = await stored_replies(postgres_url)
    copies = Counter(message_id for message_id, _ in stored)
    assert set(copies) == {d.ts for d in deliveries}
    assert set(copies.values()) == {1}
    assert dict(stored) == {d.ts: d.text for d in deliveries}

    # 2. HAProxy's retries did what Slack would otherwise have had to: the requests inside
    # replica 1 when it was killed (accepted before the SIGKILL: connected, sent, never
    # answered) went to replica 2 and were acknowledged (retry-on empty-response; without it
    # HAProxy closes Slack's connection and Slack sends them again); so were the requests
    # replica 2 sat on while frozen, once `timeout server` struck, well inside Slack's 3 s.
    # HAProxy's own counters agree: redispatches away from each replica.
    retried = [r for r in logged if r.retries > 0]
    in_killed = [r for r in retried if r.accepted < killed_at and r.server == second.name]
    assert in_killed, f"no request inside the killed replica was retried\n{context}"
    assert {r.status for r in in_killed} == {200}
    timed_out = [r for r in retried if frozen_at <= r.accepted < thawed_at and r.redispatched]
    assert timed_out, f"no request on the frozen replica was retried\n{context}"
    assert {(r.server, r.status) for r in timed_out} == {(first.name, 200)}
    assert all(timeout_server <= r.seconds < SLACK_TIMEOUT for r in timed_out)
    assert int(stats[first.name]["wredis"]) >= len(in_killed)
    assert int(stats[second.name]["wredis"]) >= len(timed_out)
    assert not [r for r in logged if r.status >= 500], "HAProxy answered Slack with an error"

    # 3. Replica 2 kept acknowledging while replica 1 was dead, and replica 1 serves again.
    alone = [r for r in logged if killed_at <= r.accepted < restarted_at]
    assert {r.server for r in alone} == {second.name}
    acks = sorted(d.acked_at for d in deliveries if d.acked_at is not None)
    dead = [t for t in acks if killed_at <= t < back_at]
    assert len(dead) >= 20, f"{len(dead)} acknowledgements while replica 1 was down"
    gaps = [b - a for a, b in itertools.pairwise([killed_at, *dead, back_at])]
    assert max(gaps) < STALL, f"no acknowledgement for {max(gaps):.2f} s with replica 1 down"
    assert any(r.server == first.name and r.status == 200 for r in logged if r.accepted > back_at)

    resent = Counter(len(d.tries) - 1 for d in deliveries if len(d.tries) > 1)
    print(
        f"\n{len(deliveries)} events; HAProxy retried {len(retried)} ({len(in_killed)} inside "
        f"the killed replica, {len(timed_out)} after timeout server); Slack re-sent "
        f"{sum(resent.values())} {dict(resent)}; replica 1 down after {down_at - killed_at:.2f} s, "
        f"back {back_at - restarted_at:.1f} s after its restart; {time.monotonic() - started:.1f} s"
    )
