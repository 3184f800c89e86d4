"""Feedback: grade members' on-time answers and tell each member, after the reveal, how they did.

With the rubric grader an answer is graded as it is stored, and again when it changes; each
grade keeps a digest of the text it graded, so the reveal grades only answers with no grade
or a stale one (all of them with an LLM grader, through the ``AnswerGrader`` port, bounded by
a deadline so a slow LLM never holds a reveal up), and a repaired reveal grades nothing twice.
Each member's private feedback is claimed in the database before it is sent, so nobody
receives it twice; whether a member turned the messages off is decided when it would be sent.
Whatever became of it, the stored grade is what ``/prep feedback`` shows again. Imports no
chat platform library.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from prepbot.content.model import Rubric, Scenario
from prepbot.core.events import Place
from prepbot.core.grading import Grade, grade
from prepbot.core.views import ErrorView, FeedbackView, MemberRef, PointCoverage
from prepbot.services import tallies
from prepbot.services.base import ServiceContext, community_for
from prepbot.services.ports import ChannelUnavailable, ChatPlatform
from prepbot.store.db import driver_connection
from prepbot.store.models import (
    Answer,
    AnswerGrade,
    Base,
    Community,
    Member,
    MemberPreference,
    Round,
    RoundStatus,
    Subscription,
)

log = logging.getLogger(__name__)

PENDING, SENT, CLOSED, OFF, FAILED = "pending", "sent", "closed", "off", "failed"


@dataclass(frozen=True)
class _GradedRound:
    """What writing a round's grades needs of it (a pregrading reads no ``Round`` entity)."""

    id: int
    subscription_id: int
    local_date: date


@functools.cache
def _set_points() -> Any:
    """Return the statement that copies grades' points onto their answers (one per row)."""
    answers = Base.metadata.tables["answers"]
    return (
        update(answers)
        .where(answers.c.id == bindparam("b_id"))
        .values(points=bindparam("b_points"))
    )


# PostgreSQL reads and writes a pregrading's rows through asyncpg with array parameters: one
# prepared statement whatever the number of answers, none of SQLAlchemy's per-row work.
_PG_PREGRADE_READ = """
SELECT a.id, a.member_id, a.text, r.id, r.subscription_id, r.local_date, r.scenario_id,
       g.text_hash
FROM answers AS a
JOIN rounds AS r ON r.id = a.round_id
LEFT JOIN answer_grades AS g ON g.answer_id = a.id
WHERE a.id = ANY($1::integer[]) AND a.on_time AND r.status = 'posted'
ORDER BY a.id
"""
_PG_STORE_GRADES = """
INSERT INTO answer_grades (answer_id, round_id, subscription_id, member_id, covered, missed,
                           red_flags, points, stuffed, graded_by, graded_at, text_hash, feedback)
SELECT k.answer_id, $2, $3, k.member_id, k.covered::json, k.missed::json, k.red_flags::json,
       k.points, k.stuffed, $4, $5, k.text_hash, $6
FROM unnest($1::integer[], $7::integer[], $8::text[], $9::text[], $10::text[], $11::integer[],
            $12::boolean[], $13::text[])
     WITH ORDINALITY AS k(answer_id, member_id, covered, missed, red_flags, points, stuffed,
                          text_hash, n)
ORDER BY k.n
ON CONFLICT (answer_id) DO UPDATE SET
  covered = excluded.covered, missed = excluded.missed, red_flags = excluded.red_flags,
  points = excluded.points, stuffed = excluded.stuffed, graded_by = excluded.graded_by,
  graded_at = excluded.graded_at, text_hash = excluded.text_hash
"""
# The answers are locked in id order first, as the answer writer locks them: no deadlock. NO KEY
# UPDATE, as an UPDATE of points takes: a reply or grade inserted for the answer need not wait.
_PG_SET_POINTS = """
WITH locked AS (
  SELECT id FROM answers WHERE id = ANY($1::integer[]) ORDER BY id FOR NO KEY UPDATE
)
UPDATE answers AS a SET points = k.points
FROM unnest($1::integer[], $2::integer[]) AS k(id, points)
WHERE a.id = k.id AND a.id IN (SELECT id FROM locked)
"""
GRADE_COLUMNS = (
    "covered",
    "missed",
    "red_flags",
    "points",
    "stuffed",
    "graded_by",
    "graded_at",
    "text_hash",
)  # what a new grade replaces of an old one (never ``feedback``: what was sent stays true)
CLAIM_CHUNK = 50  # feedback messages claimed in one UPDATE before they are sent
RECENT_ROUNDS = 30  # how far back /prep feedback <id> looks for the member's answer


class RubricAnswerGrader:
    """The built-in grader: the rubric's key points matched in the answer's own words."""

    name = "rubric"

    def grade_one(self, answer: str, rubric: Rubric) -> Grade:
        """Grade one answer (what an LLM grader falls back to)."""
        return grade(answer, rubric)

    async def grade_answers(
        self, rubric: Rubric, prompt: str, answers: Sequence[str], *, deadline_seconds: float
    ) -> list[Grade]:
        """Grade each answer with the rubric grader, off the event loop (it is all CPU)."""
        return await asyncio.to_thread(grade_all, rubric, answers)

    async def aclose(self) -> None:
        """Release nothing; here so any grader can be closed alike."""


@dataclass(frozen=True)
class RoundCoverage:
    """The reveal's group line: how many answers were graded and who made each point (counts)."""

    graded: int
    coverage: tuple[PointCoverage, ...]


class FeedbackService:
    """Grade answers at the reveal, deliver feedback, and show it again on request."""

    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx
        self._sending: dict[int, asyncio.Task[dict[str, int]]] = {}
        self._pregrading: set[asyncio.Task[None]] = set()
        self._to_pregrade: set[int] = set()  # stored, waiting for the running pregrading

    def start_delivery(self, round_id: int) -> None:
        """Send a revealed round's feedback in the background (unless it is being sent).

        A reveal must not wait for thousands of private messages paced by the platform, nor
        hold up other groups' rounds behind them.
        """
        running = self._sending.get(round_id)
        if running is not None and not running.done():
            return
        task = asyncio.create_task(self._deliver_logged(round_id), name=f"feedback-{round_id}")
        self._sending[round_id] = task
        task.add_done_callback(lambda done: self._forget(round_id, done))

    def _forget(self, round_id: int, task: asyncio.Task[dict[str, int]]) -> None:
        if self._sending.get(round_id) is task:
            del self._sending[round_id]

    async def _deliver_logged(self, round_id: int) -> dict[str, int]:
        try:
            sent = await self.deliver(round_id)
        except Exception as error:  # grades are stored: /prep feedback still shows them
            log.warning("feedback for round %s stopped: %r", round_id, error)
            return {}
        if any(sent.values()):
            log.info("feedback for round %s: %s", round_id, sent)
        return sent

    async def deliver_pending(self, since: datetime) -> int:
        """Start sending feedback still pending for rounds revealed since ``since``; count them.

        The scheduler calls this every tick, so feedback a restart interrupted still goes out.
        """
        async with self.ctx.db.transaction() as session:
            rounds = (
                await session.scalars(
                    select(AnswerGrade.round_id)
                    .join(Round, Round.id == AnswerGrade.round_id)
                    .where(
                        AnswerGrade.feedback == PENDING,
                        Round.reveal_message_id.is_not(None),
                        Round.revealed_at >= since,
                    )
                    .distinct()
                )
            ).all()
        for round_id in rounds:
            self.start_delivery(round_id)
        return len(rounds)

    async def settle(self, timeout: float | None = None) -> None:
        """Wait for the feedback being sent now (at most ``timeout`` seconds)."""
        tasks: list[asyncio.Task[Any]] = [t for t in self._sending.values() if not t.done()]
        tasks += [t for t in self._pregrading if not t.done()]
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)

    async def close(self, timeout: float = 10) -> None:
        """Let feedback being sent finish for a while, then stop; the rest stays pending."""
        await self.settle(timeout)
        running: list[asyncio.Task[Any]] = [*self._sending.values(), *self._pregrading]
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)

    async def grade_round(self, round_id: int) -> RoundCoverage:
        """Grade the round's on-time answers not graded (or changed since); return the coverage.

        With the rubric grader most answers were graded as they were stored (``pregrade``), so
        a big round's reveal grades only what changed since; an LLM grader grades them all here.
        """
        ctx = self.ctx
        async with ctx.db.transaction() as session:
            round_ = await session.get(Round, round_id)
            assert round_ is not None
            scenario = ctx.catalog.get(round_.scenario_id)
            if scenario is None or scenario.rubric is None:
                return RoundCoverage(0, ())
            answers = (
                await session.execute(
                    select(Answer.id, Answer.member_id, Answer.text, AnswerGrade.text_hash)
                    .outerjoin(AnswerGrade, AnswerGrade.answer_id == Answer.id)
                    .where(Answer.round_id == round_id, Answer.on_time.is_(True))
                    .order_by(Answer.id)
                )
            ).all()
        stale = [(a, m, t) for a, m, t, graded in answers if graded != text_digest(t)]
        if stale:
            grader = ctx.grader or RubricAnswerGrader()
            try:
                grades = await grader.grade_answers(
                    scenario.rubric,
                    scenario.prompts[0],
                    [text for _, _, text in stale],
                    deadline_seconds=ctx.grading_deadline,
                )
            except Exception as error:  # a grader must not raise; if one does, the rubric grades
                log.warning("the %s grader failed; using the rubric: %r", _name(grader), error)
                grader = RubricAnswerGrader()
                grades = await grader.grade_answers(
                    scenario.rubric, scenario.prompts[0], [t for *_, t in stale], deadline_seconds=0
                )
            self._report(grader, len(stale))
            await self._store(round_, stale, grades, _name(grader))
        return await self.coverage(round_id, scenario)

    async def pregrade(self, answer_ids: Sequence[int]) -> None:
        """Grade new or changed on-time answers of open rounds as they are stored.

        Only with the rubric grader (no network: an LLM grades at the reveal, within its
        deadline). Best effort: whatever this misses or gets before a later edit, the reveal
        grades again, since each grade remembers a digest of the text it graded.
        """
        if not answer_ids or _name(self.ctx.grader or RubricAnswerGrader()) != "rubric":
            return
        async with self.ctx.db.transaction() as session:
            if self.ctx.db.dialect == "postgresql":  # arrays, no SQLAlchemy work per row
                driver = await driver_connection(session, lone_read=True)
                rows = await driver.fetch(_PG_PREGRADE_READ, sorted(answer_ids))
            else:
                rows = await self._pregrade_read(session, answer_ids)
        by_round: dict[int, tuple[_GradedRound, str, list[tuple[int, int, str]]]] = {}
        for answer_id, member_id, text, round_id, group, day, scenario_id, graded in rows:
            if graded == text_digest(text):
                continue
            if round_id not in by_round:
                by_round[round_id] = (_GradedRound(round_id, group, day), scenario_id, [])
            by_round[round_id][2].append((answer_id, member_id, text))
        for round_, scenario_id, stale in by_round.values():
            scenario = self.ctx.catalog.get(scenario_id)
            if scenario is None or scenario.rubric is None:
                continue
            grades = await asyncio.to_thread(grade_all, scenario.rubric, [t for *_, t in stale])
            await self._store(round_, stale, grades, RubricAnswerGrader.name)

    @staticmethod
    async def _pregrade_read(session: AsyncSession, answer_ids: Sequence[int]) -> Sequence[Any]:
        """Read what pregrading needs of open rounds' on-time answers (SQLAlchemy Core)."""
        connection = await session.connection()  # Core rows: no ORM state per answer
        return (
            await connection.execute(
                select(
                    Answer.id,
                    Answer.member_id,
                    Answer.text,
                    Round.id,
                    Round.subscription_id,
                    Round.local_date,
                    Round.scenario_id,
                    AnswerGrade.text_hash,
                )
                .join(Round, Round.id == Answer.round_id)
                .outerjoin(AnswerGrade, AnswerGrade.answer_id == Answer.id)
                .where(
                    Answer.id.in_(list(answer_ids)),
                    Answer.on_time.is_(True),
                    Round.status == RoundStatus.POSTED,
                )
                .order_by(Answer.id)
            )
        ).all()

    def pregrade_soon(self, answer_ids: Sequence[int]) -> None:
        """Pregrade in the background: storing (and acknowledging) an answer never waits for it.

        One pregrading runs at a time; answers stored meanwhile wait for the next, which takes
        them all together. A busy thread's answers are graded in a few large batches (one
        read, one grading pass and one write each) instead of one small batch per commit.
        """
        if not answer_ids:
            return
        self._to_pregrade.update(answer_ids)
        if not any(not task.done() for task in self._pregrading):
            task = asyncio.create_task(self._pregrade_waiting(), name="pregrade")
            self._pregrading.add(task)
            task.add_done_callback(self._pregrading.discard)

    async def _pregrade_waiting(self) -> None:
        """Pregrade the answers waiting, and those stored meanwhile, until none wait."""
        while self._to_pregrade:
            answer_ids, self._to_pregrade = sorted(self._to_pregrade), set()
            try:
                await self.pregrade(answer_ids)
            except Exception as error:  # the reveal grades whatever this could not
                log.warning("could not grade %s stored answers early: %r", len(answer_ids), error)

    async def _store(
        self,
        round_: Round | _GradedRound,
        answers: Sequence[tuple[int, int, str]],
        grades: Sequence[Grade],
        graded_by: str,
    ) -> None:
        """Write grades (a new grade, or a changed answer's over its old one) and their points.

        An update never touches ``feedback``: what became of a member's message stays true.
        """
        ctx = self.ctx
        now = ctx.clock.now()
        rows = [
            {
                "answer_id": answer_id,
                "round_id": round_.id,
                "subscription_id": round_.subscription_id,
                "member_id": member_id,
                "covered": list(g.covered_ids),
                "missed": list(g.missed),
                "red_flags": [m.id for m in g.red_flags],
                "points": g.points,
                "stuffed": g.stuffed,
                "graded_by": graded_by[:20],
                "graded_at": now,
                "text_hash": text_digest(text),
                "feedback": PENDING,
            }
            for (answer_id, member_id, text), g in zip(answers, grades, strict=True)
        ]
        upsert = self._grade_upsert
        # executemany, batched by the driver. A reveal counts the points it finds; points
        # changed after it move the tallies, so this takes turns with a reveal in progress
        # (SQLite: the deciding lock; PostgreSQL: a share lock on the round's row).
        async with ctx.db.deciding() as session:
            revealed = await session.scalar(
                select(Round.status == RoundStatus.REVEALED)
                .where(Round.id == round_.id)
                .with_for_update(read=True)
            )
            before: dict[int, int] = {}
            if revealed:
                # Locked: two gradings of one answer after its reveal (the reveal's own and a
                # pregrading that read it before) share the round's lock, and must not both
                # move the tally from the same old points.
                before = dict(
                    (
                        await session.execute(
                            select(Answer.id, Answer.points)
                            .where(Answer.id.in_([answer_id for answer_id, _, _ in answers]))
                            .order_by(Answer.id)
                            .with_for_update()
                        )
                    ).all()
                )
            if ctx.db.dialect == "postgresql":  # two statements of arrays, whatever the rows
                await _store_with_arrays(await driver_connection(session), rows)
            else:
                connection = await session.connection()  # Core executemany: no ORM bulk path
                await connection.execute(upsert, rows)
                points = [{"b_id": row["answer_id"], "b_points": row["points"]} for row in rows]
                await connection.execute(_set_points(), points)
            if revealed:
                await tallies.add_rows(
                    session,
                    ctx.db.dialect,
                    [
                        (
                            round_.subscription_id,
                            member_id,
                            round_.local_date,
                            (0, 0, g.points - before.get(answer_id, g.points)),
                        )
                        for (answer_id, member_id, _), g in zip(answers, grades, strict=True)
                    ],
                )

    @functools.cached_property
    def _grade_upsert(self) -> Any:
        """The statement that writes grades (built once: its ``excluded`` is costly)."""
        insert = self.ctx.insert_ignore(AnswerGrade.__table__)
        return insert.on_conflict_do_update(
            index_elements=[AnswerGrade.answer_id],
            set_={name: getattr(insert.excluded, name) for name in GRADE_COLUMNS},
        )

    def _report(self, grader: object, answers: int) -> None:
        """Show in /healthz when an LLM grader fell back to the rubric for a whole batch."""
        fallbacks = getattr(grader, "last_fallbacks", 0) or 0
        if answers and fallbacks >= answers:
            why = getattr(grader, "last_error", None) or "no answer in time"
            self.ctx.problems.report(
                "grading",
                "grading",
                f"the LLM grader graded none of the last {answers} answers ({why}); the rubric "
                "grader graded them instead",
            )
        else:
            self.ctx.problems.clear("grading")

    async def coverage(self, round_id: int, scenario: Scenario) -> RoundCoverage:
        """Count, per key point, the round's graded answers that made it."""
        assert scenario.rubric is not None
        async with self.ctx.db.transaction() as session:
            covered = (
                await session.scalars(
                    select(AnswerGrade.covered).where(AnswerGrade.round_id == round_id)
                )
            ).all()
        counts = {p.id: 0 for p in scenario.rubric.key_points}
        for ids in covered:
            for point_id in ids:
                if point_id in counts:
                    counts[point_id] += 1
        return RoundCoverage(
            graded=len(covered),
            coverage=tuple(
                PointCoverage(point=p.point, made=counts[p.id]) for p in scenario.rubric.key_points
            ),
        )

    async def deliver(self, round_id: int) -> dict[str, int]:
        """Send each graded member of a revealed round their feedback, once; count outcomes."""
        ctx = self.ctx
        outcomes = {SENT: 0, CLOSED: 0, OFF: 0, FAILED: 0}
        async with ctx.db.transaction() as session:
            round_ = await session.get(Round, round_id)
            if round_ is None or round_.status != RoundStatus.REVEALED:
                return outcomes
            subscription = await session.get(Subscription, round_.subscription_id)
            assert subscription is not None
            community = await session.get(Community, subscription.community_id)
            assert community is not None
        scenario = ctx.catalog.get(round_.scenario_id)
        if scenario is None or scenario.rubric is None or round_.question_message_id is None:
            return outcomes
        platform = ctx.platform(community.platform)
        while True:
            async with ctx.db.transaction() as session:
                batch = (
                    await session.execute(
                        select(AnswerGrade, Member, MemberPreference.feedback_messages)
                        .join(Member, Member.id == AnswerGrade.member_id)
                        .outerjoin(MemberPreference, MemberPreference.member_id == Member.id)
                        .where(AnswerGrade.round_id == round_id, AnswerGrade.feedback == PENDING)
                        .order_by(AnswerGrade.answer_id)
                        .limit(CLAIM_CHUNK)
                    )
                ).all()
                if not batch:
                    return outcomes
                ids = [g.answer_id for g, _, _ in batch]
                # Claimed as sent before sending: at most once, whatever happens next. Only the
                # rows this UPDATE moved are ours; another process may be sending the rest.
                claimed = set(
                    (
                        await session.scalars(
                            update(AnswerGrade)
                            .where(AnswerGrade.answer_id.in_(ids), AnswerGrade.feedback == PENDING)
                            .values(feedback=SENT)
                            .returning(AnswerGrade.answer_id)
                            .execution_options(synchronize_session=False)
                        )
                    ).all()
                )
            for stored, member, wanted in batch:
                if stored.answer_id not in claimed:
                    continue
                if wanted is False:  # turned off, whenever: decided now, not at grading
                    outcome = OFF
                else:
                    outcome = await _send(
                        platform,
                        subscription.channel_id,
                        round_.question_message_id,
                        MemberRef(id=member.external_id, name=member.display_name),
                        feedback_view(scenario, round_, stored),
                        community.external_id,
                    )
                outcomes[outcome] += 1
                if outcome != SENT:
                    async with ctx.db.transaction() as session:
                        await session.execute(
                            update(AnswerGrade)
                            .where(AnswerGrade.answer_id == stored.answer_id)
                            .values(feedback=outcome)
                            .execution_options(synchronize_session=False)
                        )

    async def show(
        self, subscription: Subscription, member_external_id: str, scenario_id: str | None
    ) -> FeedbackView | ErrorView:
        """Return a member's feedback on their latest graded answer, or on one scenario's."""
        ctx = self.ctx
        async with ctx.db.transaction() as session:
            query = (
                select(AnswerGrade, Round)
                .join(Round, Round.id == AnswerGrade.round_id)
                .join(Member, Member.id == AnswerGrade.member_id)
                .where(
                    AnswerGrade.subscription_id == subscription.id,
                    Member.external_id == member_external_id,
                    Member.community_id == subscription.community_id,
                )
                .order_by(Round.local_date.desc())
                .limit(RECENT_ROUNDS)
            )
            found = (await session.execute(query)).all()
        for stored, round_ in found:
            if scenario_id is not None and round_.scenario_id != scenario_id:
                continue
            scenario = ctx.catalog.get(round_.scenario_id)
            if scenario is None or scenario.rubric is None:
                continue
            return feedback_view(scenario, round_, stored)
        if scenario_id is not None:
            return ErrorView(
                f"You have no graded answer to `{scenario_id}` in this study group's last "
                f"{RECENT_ROUNDS} rounds. `/prep feedback` shows your latest one."
            )
        return ErrorView(
            "You have no graded answer here yet. Answer a question in its thread before its "
            "reveal; your feedback arrives right after the reveal."
        )

    async def set_messages(self, place: Place, member: MemberRef, wanted: bool) -> None:
        """Turn a member's private feedback messages on or off, in the place's community."""
        ctx = self.ctx
        async with ctx.db.transaction() as session:
            community_id = (await community_for(ctx, session, place)).id
            await session.execute(
                ctx.insert_ignore(Member)
                .values(community_id=community_id, external_id=member.id, display_name=member.name)
                .on_conflict_do_nothing()
            )
            member_id = await session.scalar(
                select(Member.id).where(
                    Member.community_id == community_id, Member.external_id == member.id
                )
            )
            assert member_id is not None
            await session.execute(
                ctx.insert_ignore(MemberPreference)
                .values(member_id=member_id, feedback_messages=wanted)
                .on_conflict_do_update(
                    index_elements=[MemberPreference.member_id],
                    set_={"feedback_messages": wanted},
                )
            )


async def _send(
    platform: ChatPlatform,
    channel_id: str,
    thread_id: str,
    member: MemberRef,
    view: FeedbackView,
    community_id: str,
) -> str:
    """Send one member their feedback; return what became of it (sent, closed or failed)."""
    try:
        delivered = await platform.send_feedback(
            channel_id, thread_id, member, view, community_id=community_id
        )
    except ChannelUnavailable:
        return CLOSED
    except Exception as error:  # the grade stays; /prep feedback shows it
        log.warning("could not send feedback to member %s: %r", member.id, error)
        return FAILED
    return SENT if delivered else CLOSED


def text_digest(text: str) -> str:
    """Return a short digest of an answer's text, to tell whether its grade is still its own."""
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


def grade_all(rubric: Rubric, answers: Sequence[str]) -> list[Grade]:
    """Grade answers against one rubric (a thread's work: pure CPU)."""
    return [grade(text, rubric) for text in answers]


def feedback_view(scenario: Scenario, round_: Round, stored: AnswerGrade) -> FeedbackView:
    """Build a member's feedback from their stored grade and the scenario's rubric."""
    assert scenario.rubric is not None
    covered = set(stored.covered)
    flagged = set(stored.red_flags)
    return FeedbackView(
        scenario_id=scenario.id,
        title=scenario.title,
        round_date=round_.local_date,
        made=tuple(p.point for p in scenario.rubric.key_points if p.id in covered),
        missed=tuple(p.point for p in scenario.rubric.key_points if p.id not in covered),
        red_flags=tuple(f.flag for f in scenario.rubric.red_flags if f.id in flagged),
        stuffed=stored.stuffed,
    )


def _name(grader: object) -> str:
    return str(getattr(grader, "name", type(grader).__name__))[:20]


async def _store_with_arrays(driver: Any, rows: Sequence[dict[str, Any]]) -> None:
    """Write one round's grades and their answers' points on PostgreSQL (see ``_store``)."""
    first = rows[0]
    if first["graded_at"].tzinfo is None:  # asyncpg would take it as the host's local time
        raise ValueError("naive datetimes are not stored; give a timezone-aware one")
    await driver.execute(
        _PG_STORE_GRADES,
        [row["answer_id"] for row in rows],
        first["round_id"],
        first["subscription_id"],
        first["graded_by"],
        first["graded_at"],
        first["feedback"],
        [row["member_id"] for row in rows],
        *([json.dumps(row[name]) for row in rows] for name in ("covered", "missed", "red_flags")),
        [row["points"] for row in rows],
        [row["stuffed"] for row in rows],
        [row["text_hash"] for row in rows],
    )
    await driver.execute(
        _PG_SET_POINTS, [row["answer_id"] for row in rows], [row["points"] for row in rows]
    )
