"""A console study group: reads lines (typed or piped) and plays them as a chat channel.

Lines: ``/prep …`` is the slash command; ``/as NAME`` switches member; ``/edit TEXT`` and
``/delete`` change the member's last reply; ``/answer TEXT`` answers privately in a study group
that answers privately (it stands in for the Answer button's modal; ``/answer --withdraw``
takes it back); ``/next-day`` reveals the open round, moves the
console's clock to the next scheduled day (printing the week's digest when a week ends) and
posts that day's question; ``/quit``, ``/exit``
or a bare ``exit`` or ``quit`` ends the session; any other line is a reply in the thread of
the current question. The console's date lives in the database, so a
second run continues where the first stopped. Imports no Slack or Discord library.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta

from sqlalchemy import select

from prepbot.core.clock import ManualClock
from prepbot.core.commands import WITHDRAW, ScheduleChange
from prepbot.core.digests import OFF, DigestWeek
from prepbot.core.events import (
    Invocation,
    Place,
    PrivateAnswer,
    ReplyDeleted,
    ReplyEdited,
    ThreadReply,
)
from prepbot.core.schedule import ScheduleError
from prepbot.core.views import MemberRef
from prepbot.platforms.console.platform import CHANNEL, COMMUNITY, PLATFORM, ConsolePlatform
from prepbot.services import Services
from prepbot.services.answers import AnswerStatus
from prepbot.services.base import readable_schedule, schedule_of
from prepbot.services.digests import DueDigest
from prepbot.store.models import Answer, BotState, Member, Reply, Round, Subscription

DATE_KEY = "console.date"
CONSOLE_HELP = (
    "Console: /prep … runs the slash command · /as NAME switches member · /edit TEXT and "
    "/delete change your last reply · /answer TEXT answers privately (groups with "
    "answers=private) · /next-day reveals and moves to the next day · "
    "/quit (or Ctrl-C) quits · any other line answers today's question"
)
QUIT_LINES = frozenset({"/quit", "/exit", "quit", "exit"})
GOODBYE = "Bye! Your answers are saved; `prepbot run` continues where you stopped."
MEMBER_NAME = re.compile(r"^[\w.\-]{1,40}$")


class ConsoleSession:
    """One console channel, subscribed on first start, driven line by line."""

    def __init__(
        self, services: Services, platform: ConsolePlatform, clock: ManualClock, member: str
    ) -> None:
        self.services = services
        self.platform = platform
        self.clock = clock
        self.place = Place(PLATFORM, COMMUNITY, CHANNEL, "console", CHANNEL)
        self.member = MemberRef(member.lower(), member)
        self.subscription: Subscription | None = None
        self.today: date | None = None

    async def start(self) -> None:
        """Subscribe the channel on first start, restore the console's date, post its question."""
        admin = self.services.admin
        subscription = await admin.subscription(self.place)
        if subscription is None or not subscription.active:
            subscription = await admin.subscribe(self.place, ScheduleChange())
            self.platform.show(
                f"#{CHANNEL} is a study group: {schedule_of(subscription).describe()}.\n"
                + CONSOLE_HELP
            )
        self.subscription = subscription
        stored = await self._load_date()
        try:
            schedule_of(subscription)
        except ScheduleError as error:  # the stored row outlived its time zone: say so, go on
            self.platform.show(
                f"⚠ #{CHANNEL}'s schedule cannot be used ({error}). "
                "Fix it with /prep schedule and a time zone, e.g. /prep schedule Europe/London."
            )
        schedule = readable_schedule(subscription)
        if stored is None:
            real_today = schedule.local_date(datetime.now(schedule.zone))
            stored = (
                real_today if schedule.is_scheduled(real_today) else schedule.next_day(real_today)
            )
            await self._save_date(stored)
        self._set_day(stored)
        await self._post_today()

    async def handle(self, line: str) -> bool:
        """Play one input line; return False when it ends the session."""
        text = line.strip()
        if text.lower() in QUIT_LINES:
            self.platform.show(GOODBYE)
            return False
        if not text:
            return True
        self.clock.advance(timedelta(seconds=1))  # each line is typed a moment after the last
        if text.startswith("/"):
            word, _, rest = text.partition(" ")
            match word.lower():
                case "/prep":
                    await self._prep(rest)
                case "/as":
                    self._switch_member(rest.strip())
                case "/edit":
                    await self._edit(rest.strip())
                case "/answer":
                    await self._answer_privately(rest.strip())
                case "/delete":
                    await self._delete(rest.strip())
                case "/next-day":
                    await self._next_day(rest.strip())
                case "/help":
                    self.platform.show(CONSOLE_HELP)
                case _:
                    self.platform.show(f"⚠ Unknown command `{word}`. {CONSOLE_HELP}")
            return True
        await self._reply(text)
        return True

    async def _prep(self, rest: str) -> None:
        invocation = Invocation(self.place, self.member, is_admin=True, text=rest)
        response = await self.services.commands.handle(invocation)
        self.platform.show_response(response)
        self.subscription = await self.services.admin.subscription(self.place)

    def _switch_member(self, name: str) -> None:
        if not MEMBER_NAME.match(name):
            self.platform.show("⚠ Usage: /as NAME (letters, digits, '.', '-' or '_')")
            return
        self.member = MemberRef(name.lower(), name)
        self.platform.show(f"(now typing as {name})")

    async def _reply(self, text: str) -> None:
        round_ = await self._current_round()
        if round_ is None or round_.question_message_id is None:
            self.platform.show("⚠ There is no question in this channel today; nothing recorded.")
            return
        outcome = await self.services.answers.record(
            ThreadReply(
                self.place,
                round_.question_message_id,
                self.platform.new_message_id(),
                self.member,
                text,
                self.clock.now(),
            )
        )
        notes = {
            AnswerStatus.RECORDED: "answer recorded",
            AnswerStatus.LATE: "late answer recorded (after the reveal: no streak credit)",
        }
        self.platform.show(f"↳ {self.member.name}: {notes.get(outcome.status, outcome.status)}")

    async def _answer_privately(self, text: str) -> None:
        """Answer today's question privately (``--withdraw`` takes it back), as a modal would."""
        if not text:
            self.platform.show("⚠ Usage: /answer TEXT (or /answer --withdraw)")
            return
        round_ = await self._current_round()
        if round_ is None or round_.question_message_id is None:
            self.platform.show("⚠ There is no question in this channel today; nothing recorded.")
            return
        response = await self.services.commands.answer_privately(
            PrivateAnswer(
                self.place,
                round_.question_message_id,
                self.platform.new_message_id(),
                self.member,
                "" if text.lower() in WITHDRAW else text,
                self.clock.now(),
            )
        )
        self.platform.show_response(response)

    async def _edit(self, text: str) -> None:
        if not text:
            self.platform.show("⚠ Usage: /edit TEXT (replaces your last reply)")
            return
        found = await self._last_reply()
        if found is None:
            self.platform.show(f"⚠ {self.member.name} has no reply to edit today.")
            return
        thread_id, message_id = found
        outcome = await self.services.answers.edit(
            ReplyEdited(self.place, thread_id, message_id, self.member, text, self.clock.now())
        )
        self.platform.show(f"↳ {self.member.name}: reply {outcome.status}")

    async def _delete(self, rest: str) -> None:
        if rest:
            self.platform.show("⚠ Usage: /delete (deletes your last reply)")
            return
        found = await self._last_reply()
        if found is None:
            self.platform.show(f"⚠ {self.member.name} has no reply to delete today.")
            return
        thread_id, message_id = found
        outcome = await self.services.answers.withdraw(
            ReplyDeleted(self.place, thread_id, message_id, self.clock.now())
        )
        words = {
            AnswerStatus.WITHDRAWN: "answer withdrawn",
            AnswerStatus.REMOVED: "late answer removed",
            AnswerStatus.EDITED: "reply deleted",
        }
        self.platform.show(f"↳ {self.member.name}: {words.get(outcome.status, outcome.status)}")

    async def _next_day(self, rest: str) -> None:
        if rest:
            self.platform.show("⚠ Usage: /next-day")
            return
        subscription = await self.services.admin.subscription(self.place)
        if subscription is None or not subscription.active or self.today is None:
            self.platform.show("⚠ This channel is not a study group. /prep subscribe first.")
            return
        self.subscription = subscription
        await self.services.rounds.reveal_open(subscription.id)
        next_day = readable_schedule(subscription).next_day(self.today)
        await self._digest_if_week_ends(subscription, next_day)
        await self._save_date(next_day)
        self._set_day(next_day)
        self.platform.show(f"(the console's clock moves to {next_day:%A %d %B %Y})")
        await self._post_today()

    async def _digest_if_week_ends(self, subscription: Subscription, next_day: date) -> None:
        """Post the week's digest when the console's clock leaves a Monday-to-Sunday week."""
        assert self.today is not None
        monday = self.today - timedelta(days=self.today.weekday())
        if subscription.digest == OFF or next_day < monday + timedelta(weeks=1):
            return
        week = DigestWeek(monday, monday + timedelta(days=6), due=self.clock.now())
        await self.services.digests.post(
            DueDigest(subscription.id, subscription.community_id, week)
        )

    async def _post_today(self) -> None:
        subscription = self.subscription
        assert subscription is not None
        assert self.today is not None
        if not subscription.active:
            return
        if subscription.paused:
            self.platform.show(f"(paused: {subscription.paused_reason}; no question today)")
            return
        outcome = await self.services.rounds.post_round(subscription.id, self.today)
        if outcome is not None and not outcome.posted_now:
            self.platform.show(f"(today's question, {self.today:%a %d %b}, is already posted:)")
            self.platform.show_view(await self.services.queries.today(subscription))

    def _set_day(self, day: date) -> None:
        """Move the console's clock to a minute after the day's post time."""
        assert self.subscription is not None
        self.today = day
        self.clock.set(readable_schedule(self.subscription).post_time(day) + timedelta(minutes=1))

    async def _current_round(self) -> Round | None:
        assert self.subscription is not None
        assert self.today is not None
        async with self.services.ctx.db.transaction() as session:
            return await session.scalar(
                select(Round).where(
                    Round.subscription_id == self.subscription.id, Round.local_date == self.today
                )
            )

    async def _last_reply(self) -> tuple[str, str] | None:
        """Return (thread id, message id) of the current member's last reply today."""
        round_ = await self._current_round()
        if round_ is None or round_.question_message_id is None:
            return None
        async with self.services.ctx.db.transaction() as session:
            message_id = await session.scalar(
                select(Reply.message_id)
                .join(Answer, Answer.id == Reply.answer_id)
                .join(Member, Member.id == Answer.member_id)
                .where(Reply.round_id == round_.id, Member.external_id == self.member.id)
                .order_by(Reply.posted_at.desc(), Reply.id.desc())
                .limit(1)
            )
        return (round_.question_message_id, message_id) if message_id else None

    async def _load_date(self) -> date | None:
        async with self.services.ctx.db.transaction() as session:
            state = await session.get(BotState, DATE_KEY)
            return date.fromisoformat(state.value) if state else None

    async def _save_date(self, day: date) -> None:
        async with self.services.ctx.db.transaction() as session:
            state = await session.get(BotState, DATE_KEY)
            if state is None:
                session.add(BotState(name=DATE_KEY, value=day.isoformat()))
            else:
                state.value = day.isoformat()
