"""A prepbot process for crash and replica tests: the real scheduler and leadership code.

Time comes from a file the test rewrites (so days pass in milliseconds), and the chat
platform is a file of JSON lines (so the test can count every post across processes).
Standard input takes answers: ``answer CHANNEL MEMBER TEXT``; each is acknowledged with
``ack MEMBER`` on standard output only after it is stored, as a platform acknowledges an event.
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
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import select

from prepbot.app import build_app
from prepbot.core.events import Place, ThreadReply
from prepbot.core.views import MemberRef, QuestionCard, RevealCard
from prepbot.leadership import leadership_for
from prepbot.scheduling import RoundScheduler, run_scheduling
from prepbot.settings import Settings
from prepbot.store.models import Round, RoundStatus, Subscription


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

    def __init__(self, path: Path) -> None:
        self.path = path
        self.ids = itertools.count(1)

    def _write(self, record: dict[str, object]) -> str:
        message_id = f"{os.getpid()}-{next(self.ids)}"
        record |= {"id": message_id, "pid": os.getpid()}
        with self.path.open("a", encoding="utf-8") as out:
            out.write(json.dumps(record) + "\n")
            out.flush()
            os.fsync(out.fileno())
        return message_id

    async def post_question(self, channel_id: str, card: QuestionCard) -> str:
        """Record a question."""
        date = card.round_date.isoformat() if card.round_date else None
        return self._write({"kind": "question", "channel": channel_id, "date": date})

    async def post_reveal(self, channel_id: str, thread_id: str, card: RevealCard) -> str:
        """Record a reveal with who answered on time."""
        on_time = [m.id for m in card.on_time]
        return self._write(
            {"kind": "reveal", "channel": channel_id, "thread": thread_id, "on_time": on_time}
        )


async def take_answers(app: object, stop: asyncio.Event) -> None:
    """Store answers typed on standard input, acknowledging each after it is stored."""
    from prepbot.app import App

    assert isinstance(app, App)
    loop = asyncio.get_running_loop()
    lines: asyncio.Queue[str] = asyncio.Queue()

    def read() -> None:  # a daemon thread, so a blocked read never delays the exit
        for line in sys.stdin:
            loop.call_soon_threadsafe(lines.put_nowait, line)
        loop.call_soon_threadsafe(lines.put_nowait, "")

    threading.Thread(target=read, daemon=True).start()
    while not stop.is_set():
        line = await lines.get()
        if not line:
            return
        _, channel, member, text = line.strip().split(" ", 3)
        async with app.db.transaction() as session:
            thread = await session.scalar(
                select(Round.question_message_id)
                .join(Subscription, Subscription.id == Round.subscription_id)
                .where(Subscription.channel_id == channel, Round.status == RoundStatus.POSTED)
                .order_by(Round.local_date.desc())
            )
        assert thread is not None, f"no open round in {channel}"
        place = Place("fake", "T1", channel)
        reply = ThreadReply(
            place,
            thread,
            f"{member}-{thread}",
            MemberRef(member, member),
            text,
            app.services.ctx.clock.now(),
        )
        await app.services.answers.record(reply)
        print(f"ack {member}", flush=True)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", required=True)
    parser.add_argument("--clock", type=Path, required=True)
    parser.add_argument("--posts", type=Path, required=True)
    parser.add_argument("--poll", type=float, default=0.05)
    parser.add_argument("--grace", type=int, default=24 * 60)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format=f"{os.getpid()} %(message)s")
    settings = Settings.model_validate(
        {
            "database": {"url": args.db},
            "scheduler": {"catch_up_minutes": args.grace},
        }
    )
    app = await build_app(settings, FileClock(args.clock))
    app.services.ctx.platforms["fake"] = FilePlatform(args.posts)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    answers = asyncio.create_task(take_answers(app, stop))
    try:
        scheduler = RoundScheduler(app.services, grace=timedelta(minutes=args.grace))
        poll = timedelta(seconds=args.poll)
        await run_scheduling(scheduler, leadership_for(args.db), stop, poll=poll)
    finally:
        answers.cancel()
        await app.close()


if __name__ == "__main__":
    asyncio.run(main())
