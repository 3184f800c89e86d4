"""Real processes: a SIGKILL between a post and its reveal, and two replicas on PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from prepbot.app import build_app
from prepbot.core.clock import ManualClock
from prepbot.core.commands import Subscribe, parse_prep
from prepbot.core.events import Place
from prepbot.settings import Settings

WORKER = [sys.executable, "-m", "tests.workers.scheduler_worker"]
REPO = Path(__file__).resolve().parents[1]
MONDAY_9 = datetime(2026, 3, 2, 9, 1, tzinfo=UTC)


class World:
    """A database, a clock file, a posts file and the worker processes sharing them."""

    def __init__(self, url: str, folder: Path) -> None:
        self.url = url
        self.clock = folder / "clock.txt"
        self.posts = folder / "posts.jsonl"
        self.posts.touch()
        self.workers: list[subprocess.Popen[str]] = []
        self.logs: list[Path] = []

    def set_time(self, moment: datetime) -> None:
        temporary = self.clock.with_suffix(".tmp")
        temporary.write_text(moment.isoformat())
        temporary.replace(self.clock)  # readers never see a half-written time

    def start(self) -> subprocess.Popen[str]:
        log = self.posts.with_name(f"worker-{len(self.workers)}.log")
        with log.open("w") as errors:  # a file, not a pipe: a full pipe would block the worker
            worker = subprocess.Popen(
                [*WORKER, "--db", self.url, "--clock", str(self.clock), "--posts", str(self.posts)],
                cwd=REPO,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=errors,
                text=True,
            )
        self.workers.append(worker)
        self.logs.append(log)
        return worker

    def log_of(self, worker: subprocess.Popen[str]) -> str:
        return self.logs[self.workers.index(worker)].read_text()

    def records(self) -> list[dict[str, object]]:
        return [json.loads(line) for line in self.posts.read_text().splitlines() if line]

    def wait_for(
        self, check: Callable[[list[dict[str, object]]], bool], seconds: float = 20
    ) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if check(self.records()):
                return
            for worker in self.workers:
                if worker.poll() not in (None, -signal.SIGKILL, -signal.SIGTERM, 0):
                    raise AssertionError(f"a worker died: {self.log_of(worker)}")
            time.sleep(0.05)
        raise AssertionError(f"timed out; posts so far: {self.records()}")

    def stop_all(self) -> None:
        for worker in self.workers:
            if worker.poll() is None:
                worker.terminate()
        for worker in self.workers:
            try:
                worker.wait(timeout=10)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait(timeout=10)
            for stream in (worker.stdin, worker.stdout, worker.stderr):
                if stream is not None:
                    stream.close()


@pytest.fixture
def world(database_url: str, tmp_path: Path) -> Iterator[World]:
    made = World(database_url, tmp_path)
    made.set_time(MONDAY_9 - timedelta(hours=1))
    yield made
    made.stop_all()


def subscribe_channels(url: str, specs: dict[str, str]) -> None:
    async def run() -> None:
        clock = ManualClock(MONDAY_9 - timedelta(days=1))
        app = await build_app(Settings.model_validate({"database": {"url": url}}), clock)
        try:
            for channel, spec in specs.items():
                command = parse_prep(f"subscribe {spec}")
                assert isinstance(command, Subscribe)
                await app.services.admin.subscribe(Place("fake", "T1", channel), command.change)
        finally:
            await app.close()

    asyncio.run(run())


def questions(records: list[dict[str, object]]) -> Counter[tuple[object, object]]:
    return Counter((r["channel"], r["date"]) for r in records if r["kind"] == "question")


def test_a_process_killed_between_post_and_reveal(world: World):
    subscribe_channels(world.url, {"general": "09:00 UTC daily reveal=17:00"})
    world.set_time(MONDAY_9)
    first = world.start()
    world.wait_for(lambda r: questions(r)[("general", "2026-03-02")] == 1)
    assert first.stdin is not None
    assert first.stdout is not None
    for member in ("alice", "bob"):
        first.stdin.write(f"answer general {member} my answer\n")
        first.stdin.flush()
        assert first.stdout.readline().strip() == f"ack {member}"
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)

    world.set_time(MONDAY_9 + timedelta(hours=8, minutes=5))  # past the 17:00 reveal
    world.start()
    world.wait_for(lambda r: any(x["kind"] == "reveal" for x in r))
    time.sleep(0.3)  # a few more ticks: nothing more may happen
    records = world.records()
    assert questions(records) == Counter({("general", "2026-03-02"): 1})
    (reveal,) = [r for r in records if r["kind"] == "reveal"]
    assert sorted(reveal["on_time"]) == ["alice", "bob"]  # type: ignore[call-overload]


def test_sqlite_refuses_a_second_scheduler_process(tmp_path: Path):
    world = World(f"sqlite:///{tmp_path / 'prepbot.db'}", tmp_path)
    world.set_time(MONDAY_9)
    try:
        _refuse_second(world)
    finally:
        world.stop_all()


def _refuse_second(world: World) -> None:
    first = world.start()
    world.wait_for(lambda r: True)
    time.sleep(1.0)
    second = world.start()
    assert second.wait(timeout=30) != 0
    message = world.log_of(second)
    assert "already running on" in message
    assert "use PostgreSQL" in message
    assert first.poll() is None


def test_two_replicas_post_and_reveal_each_round_once_across_a_leader_kill(
    postgres_url: str, tmp_path: Path
):
    from tests.conftest import _truncate

    _truncate(postgres_url)
    world = World(postgres_url, tmp_path)
    channels = {
        "c-utc": "09:00 UTC daily reveal=17:00",
        "c-ny": "09:00 America/New_York mon-fri reveal=+6h",
        "c-london": "08:30 Europe/London daily reveal=16:00",
        "c-kolkata": "10:00 Asia/Kolkata mon,wed,fri reveal=18:00",
        "c-sydney": "07:00 Australia/Sydney daily reveal=19:00",
    }
    subscribe_channels(postgres_url, channels)
    now = MONDAY_9 - timedelta(hours=9)
    world.set_time(now)
    try:
        world.start()
        world.start()
        killed = False
        for step in range(int(timedelta(days=8) / timedelta(hours=2))):
            now += timedelta(hours=2)
            world.set_time(now)
            time.sleep(0.15)
            if step == 40 and not killed:
                leader = Counter(r["pid"] for r in world.records()).most_common(1)[0][0]
                time.sleep(0.3)  # let the leader finish what it started
                os.kill(int(leader), signal.SIGKILL)  # type: ignore[call-overload]
                killed = True
        end = now
        world.wait_for(lambda r: _all_revealed(r, end), seconds=30)
        records = world.records()
        pids = {r["pid"] for r in records}
        assert len(pids) == 2, "the standby took over after the kill"
        posts = questions(records)
        assert set(posts.values()) == {1}
        assert len(posts) >= 5 * 6
        reveals = Counter(r["thread"] for r in records if r["kind"] == "reveal")
        assert set(reveals.values()) == {1}
        question_ids = {r["id"] for r in records if r["kind"] == "question"}
        assert set(reveals) <= question_ids
    finally:
        world.stop_all()


def _all_revealed(records: list[dict[str, object]], end: datetime) -> bool:
    posted = [r for r in records if r["kind"] == "question"]
    revealed = {r["thread"] for r in records if r["kind"] == "reveal"}
    old = [
        r for r in posted if date.fromisoformat(str(r["date"])) < (end - timedelta(days=1)).date()
    ]
    return bool(posted) and all(r["id"] in revealed for r in old)
