"""The world worker processes share: a database, a clock file, a posts file, and the workers."""

from __future__ import annotations

import asyncio
import contextlib
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from multiprocessing.context import ForkServerContext
from pathlib import Path

from prepbot.app import build_app
from prepbot.core.clock import ManualClock
from prepbot.core.commands import Subscribe, parse_prep
from prepbot.core.events import Place
from prepbot.core.schedule import Schedule
from prepbot.services.base import schedule_of
from prepbot.settings import Settings

WORKER = [sys.executable, "-m", "tests.workers.scheduler_worker"]
REPO = Path(__file__).resolve().parents[2]
MONDAY_9 = datetime(2026, 3, 2, 9, 1, tzinfo=UTC)
EXPECTED_EXITS = (None, 0, -signal.SIGKILL, -signal.SIGTERM)

Record = dict[str, object]
_forkserver: ForkServerContext | None = None


def forkserver() -> ForkServerContext:
    """Return a fork server that has imported the worker once, so each start is cheap."""
    global _forkserver
    if _forkserver is None:
        _forkserver = multiprocessing.get_context("forkserver")
        _forkserver.set_forkserver_preload(["tests.workers.scheduler_worker"])
    return _forkserver


class ForkedWorker:
    """A worker process forked from the preloaded server; lines go over a connection."""

    def __init__(self, argv: list[str], log: Path) -> None:
        from tests.workers.scheduler_worker import run_forked

        context = forkserver()
        self.log = log
        self.channel, theirs = context.Pipe()
        self.process = context.Process(target=run_forked, args=(argv, theirs, str(log)))
        self.process.start()
        theirs.close()
        assert self.process.pid is not None
        self.pid: int = self.process.pid
        self.ready = self.leading = False

    @property
    def returncode(self) -> int | None:
        """Return the exit code (negative: killed by that signal), None while it runs."""
        return self.process.exitcode

    def send(self, line: str) -> None:
        """Send one line (an answer) to the worker."""
        self.channel.send(line)

    def receive(self, seconds: float = 30) -> str | None:
        """Return the worker's next message other than 'leading'; None once it has died."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                if self.channel.poll(0.05):
                    message = self.channel.recv()
                    assert isinstance(message, str)
                    if not self._status(message):
                        return message
            except (EOFError, OSError):
                self.process.join(10)
                return None
            if not self.process.is_alive():
                return None
        raise AssertionError(f"worker {self.pid} said nothing for {seconds}s: {self.text()}")

    def _status(self, message: str) -> bool:
        """Note a status message ('ready': started; 'leading': it schedules); say if it was one."""
        if message not in ("ready", "leading"):
            return False
        self.ready = True
        self.leading = self.leading or message == "leading"
        return True

    def drain(self) -> None:
        """Read the status messages the worker sent, without waiting."""
        with contextlib.suppress(EOFError, OSError):
            while self.channel.poll(0):
                message = self.channel.recv()
                assert self._status(message), f"unexpected {message!r}"

    def wait_ready(self, seconds: float = 30) -> None:
        """Wait until the worker has started (and stands by or leads)."""
        self._wait(lambda: self.ready, "started", seconds)

    def wait_leading(self, seconds: float = 30) -> None:
        """Wait until the worker says it leads the scheduling."""
        self._wait(lambda: self.leading, "led", seconds)

    def _wait(self, done: Callable[[], bool], what: str, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not done():
            assert time.monotonic() < deadline, f"worker {self.pid} never {what}: {self.text()}"
            assert self.process.is_alive(), f"worker {self.pid} died: {self.text()}"
            if self.channel.poll(0.05):
                message = self.channel.recv()
                assert self._status(message), f"unexpected {message!r}"

    def signal(self, number: int) -> None:
        """Send a signal to the worker."""
        os.kill(self.pid, number)

    def wait(self, seconds: float = 30) -> int:
        """Wait for the worker to exit and return its exit code."""
        self.process.join(seconds)
        code = self.process.exitcode
        assert code is not None, f"worker {self.pid} did not exit in {seconds}s: {self.text()}"
        return code

    def text(self) -> str:
        """Return the worker's log."""
        return self.log.read_text() if self.log.exists() else ""

    def close(self) -> None:
        """Stop the worker if it still runs and release its resources."""
        if self.process.is_alive():
            self.signal(signal.SIGTERM)
            self.process.join(10)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(10)
        self.channel.close()
        self.process.close()


class World:
    """A database, a clock file, a posts file and the worker processes sharing them."""

    def __init__(self, url: str, folder: Path) -> None:
        self.url = url
        self.clock = folder / "clock.txt"
        self.posts = folder / "posts.jsonl"
        self.posts.touch()
        self.workers: list[subprocess.Popen[str]] = []
        self.logs: list[Path] = []
        self.forked: list[ForkedWorker] = []
        self._records: list[Record] = []
        self._offset = 0

    def set_time(self, moment: datetime) -> None:
        temporary = self.clock.with_suffix(".tmp")
        temporary.write_text(moment.isoformat())
        temporary.replace(self.clock)  # readers never see a half-written time

    def _argv(self, options: Sequence[str]) -> list[str]:
        paths = ["--clock", str(self.clock), "--posts", str(self.posts)]
        return ["--db", self.url, *paths, *options]

    def start(self, *options: str) -> subprocess.Popen[str]:
        """Start a worker as a new interpreter, answering on its standard input."""
        log = self.posts.with_name(f"worker-{len(self.workers)}.log")
        with log.open("w") as errors:  # a file, not a pipe: a full pipe would block the worker
            worker = subprocess.Popen(
                [*WORKER, *self._argv(options)],
                cwd=REPO,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=errors,
                text=True,
            )
        self.workers.append(worker)
        self.logs.append(log)
        return worker

    def fork(self, *options: str) -> ForkedWorker:
        """Start a worker forked from the preloaded server (a fraction of a second)."""
        log = self.posts.with_name(f"forked-{len(self.forked)}.log")
        worker = ForkedWorker(self._argv(options), log)
        self.forked.append(worker)
        return worker

    def log_of(self, worker: subprocess.Popen[str]) -> str:
        return self.logs[self.workers.index(worker)].read_text()

    def records(self) -> list[Record]:
        """Return every post so far (read incrementally: only new complete lines are parsed)."""
        with self.posts.open("rb") as posts:
            posts.seek(self._offset)
            fresh = posts.read()
        complete = fresh.rfind(b"\n") + 1
        self._offset += complete
        self._records += [json.loads(line) for line in fresh[:complete].splitlines() if line]
        return self._records

    def check_workers(self) -> None:
        """Fail if a worker died in a way no test caused (an exception, not a signal)."""
        for worker in self.workers:
            if worker.poll() not in EXPECTED_EXITS:
                raise AssertionError(f"a worker died: {self.log_of(worker)}")
        for forked in self.forked:
            if forked.returncode not in EXPECTED_EXITS:
                raise AssertionError(f"worker {forked.pid} died: {forked.text()}")

    def wait_for(
        self, check: Callable[[list[Record]], bool], seconds: float = 20, what: str = ""
    ) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if check(self.records()):
                return
            self.check_workers()
            time.sleep(0.02)
        raise AssertionError(f"timed out waiting for {what}; last posts: {self.records()[-20:]}")

    def stop_all(self) -> None:
        for forked in self.forked:
            forked.close()
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


def subscribe_channels(url: str, specs: dict[str, str]) -> dict[str, Schedule]:
    """Subscribe fake channels (a day before MONDAY_9) and return their schedules."""

    async def run() -> dict[str, Schedule]:
        clock = ManualClock(MONDAY_9 - timedelta(days=1))
        app = await build_app(Settings.model_validate({"database": {"url": url}}), clock)
        schedules = {}
        try:
            for channel, spec in specs.items():
                command = parse_prep(f"subscribe {spec}")
                assert isinstance(command, Subscribe)
                place = Place("fake", "T1", channel)
                await app.services.admin.subscribe(place, command.change)
                subscription = await app.services.admin.subscription(place)
                assert subscription is not None
                schedules[channel] = schedule_of(subscription)
        finally:
            await app.close()
        return schedules

    return asyncio.run(run())


def questions(records: Sequence[Record]) -> Counter[tuple[object, object]]:
    return Counter((r["channel"], r["date"]) for r in records if r["kind"] == "question")
