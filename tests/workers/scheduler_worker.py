"""A prepbot process for crash and replica tests: the real scheduler and leadership code.

Time comes from a file the test rewrites (so days pass in milliseconds), and the chat
platform is a file of JSON lines (so the test can count every post across processes).
Answers come in as lines: ``answer CHANNEL MEMBER TEXT`` answers the channel's open round and
``reply CHANNEL DATE MEMBER TEXT`` the round of that local date (open or revealed); ``private
CHANNEL DATE MEMBER TEXT`` is that member's private answer to it (one submission per member and
round, as a modal sends it); each is acknowledged (``ack MEMBER`` or ``ack MEMBER STATUS``)
only after it is stored, as a platform acknowledges an event. Lines come on standard input, or
on a multiprocessing connection when the process is forked from a preloaded server
(``run_forked``: no second of imports per start).

SIGUSR1 SIGKILLs the process at once, wherever it is (``KillSwitch``); ``--die-in-window``
kills it right after the platform accepted a post, before the database stored its message id,
once (the repair must find that post rather than post again). A forked
worker also says ``ready`` once started and ``leading`` once it schedules; SIGUSR2 writes
where every task waits to the log.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from datetime import date, datetime, timedelta
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from sqlalchemy import select

from prepbot.app import App, build_app
from prepbot.core.events import Place, PrivateAnswer, ThreadReply
from prepbot.core.views import DigestCard, FeedbackView, MemberRef, QuestionCard, RevealCard
from prepbot.leadership import AlreadyRunning, Leadership, leadership_for
from prepbot.scheduling import RoundScheduler, run_scheduling
from prepbot.settings import Settings
from prepbot.store.models import Round, RoundStatus, Subscription


# The service calls that post and then commit the message id: each closes its window on return.
class KillSwitch:
    """SIGKILL this process the moment it is asked: anywhere, between a post and its commit too.

    A kill after the platform made a message but before the database stored its id is the
    window a repair closes by finding the bot's own message first (FilePlatform.find_question).
    """

    def request(self, *_: object) -> None:
        """Kill now (a signal handler)."""
        os.kill(os.getpid(), signal.SIGKILL)


class FileClock:
    """The time written in a file, as ISO 8601."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def now(self) -> datetime:
        """Return the time in the file."""
        return datetime.fromisoformat(self.path.read_text().strip())


class FilePlatform:
    """Append every post to a JSON-lines file, durably, and return unique message ids."""

    name = "fake"

    def __init__(
        self,
        path: Path,
        kills: KillSwitch,
        *,
        fsync: bool = True,
        die_in_window: bool = False,
        delay: float = 0,
    ) -> None:
        self.path = path
        self.delay = delay
        self.kills = kills
        self.fsync = fsync
        self.die_in_window = die_in_window
        self.ids = itertools.count(1)

    def _append(self, record: dict[str, object]) -> str:
        message_id = f"{os.getpid()}-{next(self.ids)}"
        record |= {"id": message_id, "pid": os.getpid()}
        with self.path.open("a", encoding="utf-8") as out:
            out.write(json.dumps(record) + "\n")  # one write(2) on an O_APPEND file
            out.flush()
            if self.fsync:
                os.fsync(out.fileno())
        return message_id

    async def _write(self, record: dict[str, object]) -> str:
        message_id = self._append(record)
        if self.die_in_window:
            os.kill(os.getpid(), signal.SIGKILL)  # the platform has it; the database never will
        await asyncio.sleep(self.delay)  # a slow response: the post is made, its id not yet known
        return message_id

    async def post_question(
        self, channel_id: str, card: QuestionCard, *, community_id: str | None = None
    ) -> str:
        """Record a question."""
        day = card.round_date.isoformat() if card.round_date else None
        return await self._write({"kind": "question", "channel": channel_id, "date": day})

    async def post_reveal(
        self, channel_id: str, thread_id: str, card: RevealCard, *, community_id: str | None = None
    ) -> str:
        """Record a reveal with who answered on time and whose private answers it publishes."""
        on_time = [m.id for m in card.on_time]
        shared = [a.member.id for a in card.shared]
        return await self._write(
            {
                "kind": "reveal",
                "channel": channel_id,
                "thread": thread_id,
                "on_time": on_time,
                "shared": shared,
            }
        )

    async def show_answer_count(
        self,
        channel_id: str,
        thread_id: str,
        card: QuestionCard,
        *,
        community_id: str | None = None,
    ) -> None:
        """Edit nothing: a count is not a post, and the posts file records only posts."""

    async def send_notice(
        self,
        channel_id: str,
        thread_id: str,
        member: MemberRef,
        text: str,
        *,
        community_id: str | None = None,
    ) -> bool:
        """Deliver nothing (as for a count)."""
        return True

    async def send_feedback(
        self,
        channel_id: str,
        thread_id: str,
        member: MemberRef,
        feedback: FeedbackView,
        *,
        community_id: str | None = None,
    ) -> bool:
        """Record a member's feedback on a round (no kill window, no delay: posts have those)."""
        self._append(
            {"kind": "feedback", "channel": channel_id, "thread": thread_id, "member": member.id}
        )
        return True

    async def post_digest(
        self,
        channel_id: str,
        card: DigestCard,
        picture: bytes | None,
        *,
        community_id: str | None = None,
    ) -> str:
        """Record a group's weekly digest (no kill window: rounds are what the suite tests)."""
        week = card.period_end.isoformat()
        return self._append({"kind": "digest", "channel": channel_id, "week": week})

    async def find_digest(
        self,
        channel_id: str,
        card: DigestCard,
        *,
        community_id: str | None = None,
        since: datetime,
    ) -> str | None:
        """Return the id of a digest already recorded for this channel and week."""
        for post in self._posts():
            if (post["kind"], post.get("channel"), post.get("week")) == (
                "digest",
                channel_id,
                card.period_end.isoformat(),
            ):
                return str(post["id"])
        return None

    def _posts(self) -> list[dict[str, object]]:
        if not self.path.exists():
            return []
        lines = self.path.read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines if line.strip()]

    async def find_question(
        self,
        channel_id: str,
        card: QuestionCard,
        *,
        community_id: str | None = None,
        since: datetime,
    ) -> str | None:
        """Return the id of a question already recorded for this channel and date."""
        day = card.round_date.isoformat() if card.round_date else None
        for post in self._posts():
            if (post["kind"], post.get("channel"), post.get("date")) == (
                "question",
                channel_id,
                day,
            ):
                return str(post["id"])
        return None

    async def find_reveal(
        self,
        channel_id: str,
        thread_id: str,
        card: RevealCard,
        *,
        community_id: str | None = None,
        since: datetime,
    ) -> str | None:
        """Return the id of a reveal already recorded in this thread."""
        for post in self._posts():
            if (post["kind"], post.get("thread")) == ("reveal", thread_id):
                return str(post["id"])
        return None


class Announced:
    """A leadership that says when this process starts leading; a standby may wait on SQLite."""

    def __init__(self, inner: Leadership, say: Callable[[str], None], *, patient: bool) -> None:
        self.inner = inner
        self.say = say
        self.patient = patient
        self.announced = False

    async def acquire(self) -> bool:
        """Try the lead; a patient standby treats SQLite's refusal as 'not yet'."""
        try:
            got = await self.inner.acquire()
        except AlreadyRunning:
            if not self.patient:
                raise
            return False
        if got and not self.announced:
            self.announced = True
            self.say("leading")
        return got

    async def still_leading(self) -> bool:
        """Delegate."""
        return await self.inner.still_leading()

    async def release(self) -> None:
        """Delegate."""
        await self.inner.release()

    def describe(self) -> str:
        """Delegate."""
        return self.inner.describe()


async def _thread_of(app: App, channel: str, day: date | None) -> str | None:
    """Return the question message id of a channel's open round, or of its round on ``day``."""
    query = (
        select(Round.question_message_id)
        .join(Subscription, Subscription.id == Round.subscription_id)
        .where(Subscription.channel_id == channel)
    )
    if day is None:
        query = query.where(Round.status == RoundStatus.POSTED).order_by(Round.local_date.desc())
    else:
        query = query.where(Round.local_date == day)
    async with app.db.transaction() as session:
        return await session.scalar(query)


async def take_answers(
    app: App, lines: asyncio.Queue[str], say: Callable[[str], None], stop: asyncio.Event
) -> None:
    """Store answers as they come, acknowledging each after it is stored."""
    while not stop.is_set():
        line = await lines.get()
        if not line:
            return
        words = line.strip().split(" ", 4 if line.startswith(("reply ", "private ")) else 3)
        if words[0] in ("reply", "private"):
            _, channel, day, member, text = words
            on: date | None = date.fromisoformat(day)
        else:
            _, channel, member, text = words
            on = None
        thread = None
        for _attempt in range(200):  # the post may be on the platform, not yet committed
            thread = await _thread_of(app, channel, on)
            if thread is not None:
                break
            await asyncio.sleep(0.05)
        if thread is None:  # said, so a test reading the answer fails instead of waiting
            say(f"none {member}")
            continue
        place = Place("fake", "T1", channel)
        if words[0] == "private":  # from the Answer button's form: one submission per member
            answer = PrivateAnswer(
                place,
                thread,
                f"{member}-{thread}",
                MemberRef(member, member),
                text,
                app.services.ctx.clock.now(),
            )
            stored = await app.services.answers.answer_privately(answer)
            say(f"ack {member} {stored.status.value}")
            continue
        reply = ThreadReply(
            place,
            thread,
            f"{member}-{thread}",
            MemberRef(member, member),
            text,
            app.services.ctx.clock.now(),
        )
        outcome = await app.services.answers.record(reply)
        say(f"ack {member} {outcome.status.value}" if words[0] == "reply" else f"ack {member}")


def _dump_tasks() -> None:
    """Write where every task waits (each awaited coroutine in turn) to the log."""
    for task in asyncio.all_tasks():
        where: Any = task.get_coro()
        frames = []
        while where is not None:
            frame = getattr(where, "cr_frame", None) or getattr(where, "ag_frame", None)
            if frame is not None:
                frames.append(f"{frame.f_code.co_name}:{frame.f_lineno}")
            where = getattr(where, "cr_await", None) or getattr(where, "ag_await", None)
        print("task", task.get_name(), " > ".join(frames), file=sys.stderr)
    sys.stderr.flush()


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", required=True)
    parser.add_argument("--clock", type=Path, required=True)
    parser.add_argument("--lease", type=float, default=1.0)
    parser.add_argument("--posts", type=Path, required=True)
    parser.add_argument("--poll", type=float, default=0.05)
    parser.add_argument("--grace", type=int, default=24 * 60)
    parser.add_argument("--no-fsync", action="store_true", help="faster posts, for long runs")
    parser.add_argument("--standby", action="store_true", help="on SQLite, wait for the lock")
    parser.add_argument("--die-in-window", action="store_true")
    parser.add_argument("--safety", type=float, default=30, help="safety tick, in seconds")
    parser.add_argument("--post-delay", type=float, default=0, help="slow platform responses")
    return parser.parse_args(argv)


async def main(argv: list[str] | None = None, channel: Connection | None = None) -> None:
    """Schedule rounds and take answers until SIGTERM (or a kill)."""
    args = _parse(argv)
    kills = KillSwitch()
    signal.signal(signal.SIGUSR1, kills.request)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format=f"{os.getpid()} %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    logging.getLogger("apscheduler").setLevel(logging.ERROR)  # not each skipped or run job
    loop = asyncio.get_running_loop()
    lines: asyncio.Queue[str] = asyncio.Queue()

    def say(text: str) -> None:
        if channel is not None:
            channel.send(text)
        else:
            print(text, flush=True)

    def read() -> None:  # a daemon thread, so a blocked read never delays the exit
        if channel is not None:
            try:
                while True:
                    loop.call_soon_threadsafe(lines.put_nowait, channel.recv())
            except (EOFError, OSError):
                pass
        else:
            for line in sys.stdin:
                loop.call_soon_threadsafe(lines.put_nowait, line)
        loop.call_soon_threadsafe(lines.put_nowait, "")

    settings = Settings.model_validate(
        {"database": {"url": args.db}, "scheduler": {"catch_up_minutes": args.grace}}
    )
    app = await build_app(settings, FileClock(args.clock))
    app.services.ctx.lease = timedelta(seconds=args.lease)  # real seconds: a dead owner's
    app.services.ctx.platforms["fake"] = FilePlatform(
        args.posts,
        kills,
        fsync=not args.no_fsync,
        die_in_window=args.die_in_window,
        delay=args.post_delay,
    )
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGUSR2, _dump_tasks)  # for debugging a stuck worker
    threading.Thread(target=read, daemon=True).start()
    answers = asyncio.create_task(take_answers(app, lines, say, stop))
    announce = say if channel is not None else logging.getLogger(__name__).info
    leadership = Announced(leadership_for(args.db), announce, patient=args.standby)
    announce("ready")
    try:
        scheduler = RoundScheduler(
            app.services,
            grace=timedelta(minutes=args.grace),
            safety_interval=timedelta(seconds=args.safety),
        )
        poll = timedelta(seconds=args.poll)
        await run_scheduling(scheduler, leadership, stop, poll=poll)
    finally:
        answers.cancel()
        await app.close()


def run_forked(argv: list[str], channel: Connection, log: str) -> None:
    """Run a worker forked from a preloaded server: lines on ``channel``, output to ``log``."""
    descriptor = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    os.dup2(descriptor, 1)
    os.dup2(descriptor, 2)
    os.close(descriptor)
    asyncio.run(main(argv, channel))


if __name__ == "__main__":
    asyncio.run(main())
