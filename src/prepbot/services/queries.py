"""Read-only lookups: today's question, leaderboards, streaks, search, show, topics, practice.

Leaderboards rank on-time answers first, then current streak, for a study group or a whole
community, this week / month / all time in the group's time zone. Like streaks, they count an
answer once its round is revealed. No spoilers: while a round of a scenario is open anywhere
in a community, ``show``, ``search`` and ``ask`` there never give away its insights, trap or
follow-ups. Imports no chat platform library.
"""

from __future__ import annotations

import random
from collections import Counter
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import Integer, and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from prepbot.core.commands import AnswerMode, Period
from prepbot.core.events import Place
from prepbot.core.text import local_time
from prepbot.core.views import (
    LATE,
    MISSED,
    ON_TIME,
    OPEN,
    ErrorView,
    LeaderboardRow,
    LeaderboardView,
    MemberRef,
    Notice,
    PendingReveal,
    QuestionCard,
    RevealCard,
    ScenarioDetail,
    SearchResult,
    SearchResults,
    StreakView,
    TopicEntry,
    TopicsView,
    View,
    calendar_start,
)
from prepbot.services import tallies
from prepbot.services.base import ServiceContext, local_today, open_rounds, schedule_of
from prepbot.store.models import (
    Answer,
    Community,
    Member,
    MemberStats,
    MemberTally,
    Round,
    RoundStatus,
    Subscription,
)

NOT_REVEALED = (RoundStatus.CLAIMED, RoundStatus.POSTED)

LEADERBOARD_SIZE = 20


def period_start(period: Period, today: date) -> date | None:
    """Return the first day a leaderboard period covers (weeks start on Monday)."""
    if period is Period.WEEK:
        return today - timedelta(days=today.weekday())
    if period is Period.MONTH:
        return today.replace(day=1)
    return None


class QueryService:
    """Answer the read-only /prep commands."""

    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx

    async def today(self, subscription: Subscription | None) -> View:
        """Return this channel's open question, or why there is none and when the next comes."""
        if subscription is None or not subscription.active:
            return ErrorView("This channel is not a study group. An admin can run /prep subscribe.")
        day = self.today_of(subscription)
        async with self.ctx.db.transaction() as session:
            round_ = (await session.scalars(open_rounds(subscription.id))).all()
            todays = await session.scalar(
                select(Round).where(
                    Round.subscription_id == subscription.id, Round.local_date == day
                )
            )
        if not round_:
            return Notice(self.no_open_question(subscription, todays))
        latest = round_[-1]
        scenario = self.ctx.catalog.get(latest.scenario_id)
        if scenario is None:
            return ErrorView(f"Today's scenario '{latest.scenario_id}' left the question bank.")
        return QuestionCard.of(
            scenario,
            self.ctx.catalog.topics,
            round_date=latest.local_date,
            reveal_at=latest.reveal_due_at,
            timezone=subscription.timezone,
            private=subscription.answer_mode == AnswerMode.PRIVATE,
        )

    async def hint(self, subscription: Subscription) -> View:
        """Return the open question's hints: nudges written never to give the answer away."""
        async with self.ctx.db.transaction() as session:
            rounds = (await session.scalars(open_rounds(subscription.id))).all()
        if not rounds:
            return ErrorView("There is no open question to hint at. See /prep today.")
        scenario = self.ctx.catalog.get(rounds[-1].scenario_id)
        if scenario is None or not scenario.hints:
            return Notice(
                "This question has no hints. Start from what the interviewer is really asking, "
                "and answer it in the thread before the reveal."
            )
        hints = "\n".join(f"💡 {h}" for h in scenario.hints)
        return Notice(f"Hints for “{scenario.title}” (the answer stays in the reveal):\n{hints}")

    def no_open_question(self, subscription: Subscription, todays: Round | None) -> str:
        """Say why a study group has no open question: revealed, paused, or not posted yet.

        ``todays`` is the group's round of today, if it has one; ``/prep today`` and
        ``/prep post-now`` both answer with these words, so they never disagree.
        """
        if todays is not None and todays.status == RoundStatus.CLAIMED:
            return "Today's question is being posted right now; try /prep today in a moment."
        if subscription.paused:
            reason = f" ({subscription.paused_reason})" if subscription.paused_reason else ""
            return (
                f"No open question right now: this study group is paused{reason}. "
                "An admin can start it again with /prep resume."
            )
        next_at = local_time(
            self.next_question_at(subscription, todays.local_date if todays else None),
            subscription.timezone,
        )
        if todays is not None and todays.status == RoundStatus.REVEALED:
            revealed = (
                f" at {local_time(todays.revealed_at, subscription.timezone)}"
                if todays.revealed_at
                else ""
            )
            return (
                f"Today's question was already revealed{revealed}; its key insights are in its "
                f"thread. The next question comes {next_at}."
            )
        return f"No open question right now. The next question comes {next_at}."

    def next_question_at(self, subscription: Subscription, last_round: date | None) -> datetime:
        """Return the group's next scheduled post after now and after ``last_round``'s day."""
        schedule = schedule_of(subscription)
        day, at = schedule.next_post_after(self.ctx.clock.now())
        if last_round is not None and day <= last_round:
            at = schedule.post_time(schedule.next_day(last_round))
        return at

    async def leaderboard(
        self, subscriptions: list[Subscription], scope: str, period: Period, today: date
    ) -> LeaderboardView:
        """Rank members over the given study groups for a period ending today.

        The ranking rule: on-time answers first, then key points (what the rubric grader
        credited across those answers), then current streak, then late answers, then name.
        Showing up every day stays what counts most; points break ties between the regulars.
        Read from the per-member tallies (``services.tallies``): a group's board reads its
        rank index down to the cut, so the cost grows with neither members nor history.
        """
        since = period_start(period, today)
        ids = [s.id for s in subscriptions]
        kind = {Period.WEEK: tallies.WEEK, Period.MONTH: tallies.MONTH, Period.ALL: tallies.ALL}
        tally = MemberTally
        in_period = (
            tally.subscription_id.in_(ids),
            tally.period == kind[period],
            tally.period_start == (since or tallies.ALL_TIME),
        )
        still_open = (
            select(func.count())
            .select_from(Round)
            .where(Round.subscription_id.in_(ids), Round.status == RoundStatus.POSTED)
        )
        async with self.ctx.db.transaction() as session:
            if len(ids) == 1:
                found = await self._group_top(session, ids[0], in_period)
            else:
                found = await self._community_top(session, ids, in_period)
            waiting = await session.scalar(still_open) or 0
        rows: list[LeaderboardRow] = []
        for position, (external_id, name, answered, missed, current, points) in enumerate(found, 1):
            counts = (int(answered or 0), int(points or 0), int(current or 0))
            tied = rows and (rows[-1].on_time, rows[-1].points, rows[-1].streak) == counts
            rank = rows[-1].rank if tied else position
            ref = MemberRef(external_id, name)
            rows.append(
                LeaderboardRow(rank, ref, counts[0], int(missed or 0), counts[2], points=counts[1])
            )
        label = {Period.WEEK: "this week", Period.MONTH: "this month", Period.ALL: "all time"}
        return LeaderboardView(
            scope=scope, period=label[period], since=since, rows=tuple(rows), open_rounds=waiting
        )

    @staticmethod
    async def _group_top(
        session: AsyncSession, subscription_id: int, in_period: tuple[ColumnElement[bool], ...]
    ) -> list[tuple[str, str, int, int, int, int]]:
        """Return one group's top rows, reading its tallies down the rank index.

        (external id, name, on time, late, streak, points), ranked. Only the rows at or above
        the 20th row's on-time answers and points are read — the board and its ties — and
        streaks and names are looked up by key for those alone, so the cost does not grow with
        the group's members or history (ties at the cut are the exception: all are read).
        """
        tally = MemberTally
        cutoff = (
            await session.execute(
                select(tally.on_time, tally.points)
                .where(*in_period)
                .order_by(tally.on_time.desc(), tally.points.desc())
                .offset(LEADERBOARD_SIZE - 1)
                .limit(1)
            )
        ).first()
        shown = in_period
        if cutoff is not None:
            on_time, points = cutoff
            above = or_(
                tally.on_time > on_time, and_(tally.on_time == on_time, tally.points >= points)
            )
            shown = (*in_period, above)
        candidates = (
            await session.execute(
                select(tally.member_id, tally.on_time, tally.late, tally.points).where(
                    *shown, tally.on_time + tally.late > 0
                )
            )
        ).all()
        streaks: dict[int, int] = {}
        names: dict[int, tuple[str, str]] = {}
        members = [row.member_id for row in candidates]
        for start in range(0, len(members), 1000):
            chunk = members[start : start + 1000]
            streaks.update(
                (
                    await session.execute(
                        select(MemberStats.member_id, MemberStats.current_streak).where(
                            MemberStats.subscription_id == subscription_id,
                            MemberStats.member_id.in_(chunk),
                        )
                    )
                ).all()
            )

        def rank_key(row: Any) -> tuple[int, int, int, int]:
            return (-row.on_time, -row.points, -streaks.get(row.member_id, 0), -row.late)

        ordered = sorted(candidates, key=rank_key)
        if len(ordered) > LEADERBOARD_SIZE:  # names break the last ties: look up only those
            last = rank_key(ordered[LEADERBOARD_SIZE - 1])
            ordered = ordered[:LEADERBOARD_SIZE] + [
                row for row in ordered[LEADERBOARD_SIZE:] if rank_key(row) == last
            ]
        wanted = [row.member_id for row in ordered]
        for start in range(0, len(wanted), 1000):
            rows = await session.execute(
                select(Member.id, Member.external_id, Member.display_name).where(
                    Member.id.in_(wanted[start : start + 1000])
                )
            )
            names.update({id_: (external, name) for id_, external, name in rows.all()})
        ordered = [row for row in ordered if row.member_id in names]
        ordered.sort(key=lambda row: (*rank_key(row), names[row.member_id][1].lower()))
        return [
            (
                *names[row.member_id],
                row.on_time,
                row.late,
                streaks.get(row.member_id, 0),
                row.points,
            )
            for row in ordered[:LEADERBOARD_SIZE]
        ]

    @staticmethod
    async def _community_top(
        session: AsyncSession, ids: list[int], in_period: tuple[ColumnElement[bool], ...]
    ) -> list[Any]:
        """Return a community's top rows: each member's tallies summed over its groups."""
        tally = MemberTally
        counted = (
            select(
                tally.member_id,
                func.sum(tally.on_time).label("on_time"),
                func.sum(tally.late).label("late"),
                func.sum(tally.points).label("points"),
            )
            .where(*in_period)
            .group_by(tally.member_id)
            .subquery()
        )
        streaks = (
            select(MemberStats.member_id, func.max(MemberStats.current_streak).label("best"))
            .where(MemberStats.subscription_id.in_(ids))
            .group_by(MemberStats.member_id)
            .subquery()
        )
        top = (
            select(
                counted.c.member_id,
                counted.c.on_time.cast(Integer).label("on_time"),
                counted.c.late.cast(Integer).label("late"),
                counted.c.points.cast(Integer).label("points"),
                func.coalesce(streaks.c.best, 0).label("streak"),
            )
            .outerjoin(streaks, streaks.c.member_id == counted.c.member_id)
            .where(counted.c.on_time + counted.c.late > 0)
            .subquery()
        )
        query = (
            select(
                Member.external_id,
                Member.display_name,
                top.c.on_time,
                top.c.late,
                top.c.streak,
                top.c.points,
            )
            .join(top, top.c.member_id == Member.id)
            .order_by(
                top.c.on_time.desc(),
                top.c.points.desc(),
                top.c.streak.desc(),
                top.c.late.desc(),
                func.lower(Member.display_name),
            )
            .limit(LEADERBOARD_SIZE)
        )
        return list((await session.execute(query)).all())

    async def streak(self, subscription: Subscription, who: MemberRef | str) -> View:
        """Return a member's streak in a study group; name a member by id or display name."""
        async with self.ctx.db.transaction() as session:
            query = select(Member).where(Member.community_id == subscription.community_id)
            if isinstance(who, MemberRef):
                query = query.where(Member.external_id == who.id)
            else:
                query = query.where(
                    (Member.external_id == who) | (func.lower(Member.display_name) == who.lower())
                )
            member = await session.scalar(query.limit(1))
            if member is None:
                name = who.name if isinstance(who, MemberRef) else who
                return StreakView(MemberRef(name, name), 0, 0, 0, 0)
            stats = await session.get(MemberStats, (subscription.id, member.id))
            late = await session.scalar(
                select(func.count())
                .select_from(Answer)
                .join(Round, Round.id == Answer.round_id)
                .where(
                    Answer.member_id == member.id,
                    Answer.on_time.is_(False),
                    Round.subscription_id == subscription.id,
                )
            )
            pending = await session.scalar(
                select(func.count())
                .select_from(Answer)
                .join(Round, Round.id == Answer.round_id)
                .where(
                    Answer.member_id == member.id,
                    Answer.on_time.is_(True),
                    Round.subscription_id == subscription.id,
                    Round.status != RoundStatus.REVEALED,
                )
            )
            today = local_today(self.ctx, subscription)
            days = await member_calendar(session, subscription.id, member.id, today)
        ref = MemberRef(member.external_id, member.display_name)
        calendar = tuple(sorted((day, state) for day, (state, _) in days.items()))
        current, best, on_time = (
            (stats.current_streak, stats.best_streak, stats.on_time) if stats else (0, 0, 0)
        )
        return StreakView(
            ref, current, best, on_time, late or 0, pending or 0, calendar=calendar, today=today
        )

    async def open_in_community(self, place: Place | None) -> dict[str, list[PendingReveal]]:
        """Return the scenarios with a round open in a place's community, and where each reveals.

        Every channel of the community counts (a Slack workspace, a Discord server, the
        console), whether or not ``place`` itself is a study group; other communities do not.
        """
        if place is None:
            return {}
        query = (
            select(Round.scenario_id, Round.reveal_due_at, Subscription)
            .join(Subscription, Subscription.id == Round.subscription_id)
            .join(Community, Community.id == Subscription.community_id)
            .where(
                Community.platform == place.platform,
                Community.external_id == place.community_id,
                Round.status.in_(NOT_REVEALED),
            )
            .order_by(Round.reveal_due_at, Subscription.channel_id)
        )
        async with self.ctx.db.transaction() as session:
            found = (await session.execute(query)).all()
        pending: dict[str, list[PendingReveal]] = {}
        for scenario_id, reveal_at, subscription in found:
            pending.setdefault(scenario_id, []).append(
                PendingReveal(
                    channel_id=subscription.channel_id,
                    channel_name=subscription.channel_name,
                    reveal_at=reveal_at,
                    timezone=subscription.timezone,
                )
            )
        return pending

    async def search(self, words: str, place: Place | None = None) -> SearchResults:
        """Return the best matching scenarios; an open round's only by the words of its question."""
        secret = await self.open_in_community(place)
        hits = self.ctx.catalog.search(words, limit=8, question_only=secret.keys())
        return SearchResults(
            query=words,
            results=tuple(
                SearchResult(h.scenario.id, h.scenario.title, h.scenario.context.company)
                for h in hits
            ),
        )

    async def show(self, scenario_id: str, place: Place | None = None) -> View:
        """Return one scenario in full (its question only while it is open), or suggestions."""
        scenario = self.ctx.catalog.get(scenario_id)
        if scenario is None:
            close = self.ctx.catalog.suggest_ids(scenario_id)
            hint = f" Did you mean {', '.join(close)}?" if close else " Try /prep search."
            return ErrorView(f"No scenario with id '{scenario_id}'.{hint}")
        question = QuestionCard.of(scenario, self.ctx.catalog.topics)
        withheld = (await self.open_in_community(place)).get(scenario.id)
        if withheld:
            return ScenarioDetail(question=question, reveal=None, withheld=tuple(withheld))
        return ScenarioDetail(question=question, reveal=RevealCard.of(scenario))

    def topics(self) -> TopicsView:
        """Return the topics that have scenarios, with their counts."""
        counts = Counter(t for s in self.ctx.catalog.scenarios for t in s.topics)
        return TopicsView(
            topics=tuple(
                TopicEntry(topic.id, topic.name, counts[topic.id])
                for topic in sorted(self.ctx.catalog.topics.values(), key=lambda t: t.id)
                if counts[topic.id]
            )
        )

    async def ask(
        self, topic: str | None, place: Place | None = None, rng: random.Random | None = None
    ) -> View:
        """Return a practice question, on a topic if given, never one open in this community."""
        catalog = self.ctx.catalog
        found = catalog.find_topic(topic) if topic is not None else None
        if topic is not None and found is None:
            close = catalog.suggest_topics(topic)
            hint = (
                f" Did you mean {' or '.join(f'`{t}`' for t in close)}?"
                if close
                else " See /prep topics."
            )
            return ErrorView(f"Unknown topic '{topic}'.{hint}")
        pool = catalog.with_topic(found) if found else catalog.scenarios
        if not pool:
            return ErrorView(f"No scenario has the topic '{found}' yet.")
        secret = await self.open_in_community(place)
        free = [s for s in pool if s.id not in secret]
        if not free:
            where = ", ".join(
                sorted({f"#{p.channel_name or p.channel_id}" for s in pool for p in secret[s.id]})
            )
            which = "The only question" if len(pool) == 1 else "Every question"
            about = f" on '{found}'" if found else ""
            return ErrorView(
                f"{which}{about} is open in {where} right now: answer it there, "
                "or ask for another topic (see /prep topics)."
            )
        scenario = (rng or random.Random()).choice(free)
        return QuestionCard.of(scenario, catalog.topics, practice=True)

    async def community_subscriptions(self, subscription: Subscription) -> list[Subscription]:
        """Return every study group of the subscription's community."""
        async with self.ctx.db.transaction() as session:
            return list(
                (
                    await session.scalars(
                        select(Subscription).where(
                            Subscription.community_id == subscription.community_id
                        )
                    )
                ).all()
            )

    def today_of(self, subscription: Subscription) -> date:
        """Return today's date in the study group's time zone."""
        return local_today(self.ctx, subscription)


async def member_calendar(
    session: AsyncSession, subscription_id: int, member_id: int, today: date
) -> dict[date, tuple[str, str]]:
    """Return a member's streak calendar in a group: each round's date → (state, scenario id).

    The weeks of ``calendar_start(today)`` to ``today``; a round still open is OPEN, a
    revealed one ON_TIME, LATE or MISSED for this member. Days without a round are absent.
    """
    rounds = (
        await session.execute(
            select(Round.id, Round.local_date, Round.status, Round.scenario_id).where(
                Round.subscription_id == subscription_id,
                Round.local_date >= calendar_start(today),
                Round.local_date <= today,
                Round.status.in_((RoundStatus.POSTED, RoundStatus.REVEALED)),
            )
        )
    ).all()
    answers = dict(
        (
            await session.execute(
                select(Answer.round_id, Answer.on_time).where(
                    Answer.member_id == member_id, Answer.round_id.in_([r[0] for r in rounds])
                )
            )
        ).all()
    )
    days: dict[date, tuple[str, str]] = {}
    for round_id, day, status, scenario_id in rounds:
        if status != RoundStatus.REVEALED:
            state = OPEN
        elif round_id not in answers:
            state = MISSED
        else:
            state = ON_TIME if answers[round_id] else LATE
        days[day] = (state, scenario_id)
    return days
