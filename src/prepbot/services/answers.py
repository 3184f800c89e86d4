"""Answers: record, edit and withdraw members' replies in a round's thread.

Every write is keyed by the platform's message id, so a replayed event changes nothing, and it
is committed before the call returns, so a platform may acknowledge the event only after the
answer is stored. A reply before the reveal is on time; after it, late. Events go through one
queue in arrival order; new replies waiting together are stored in one transaction with a few
multi-row statements (group commit), which is what lets a busy thread's answers keep up with
the platform. Imports no chat platform library.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import bindparam, delete, func, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql import Executable

from prepbot.core.commands import AnswerMode
from prepbot.core.events import Place, PrivateAnswer, ReplyDeleted, ReplyEdited, ThreadReply
from prepbot.core.views import MemberRef
from prepbot.services import tallies
from prepbot.services.base import ServiceContext, insert_ignore
from prepbot.store.db import WRITER_POOL, driver_connection, is_deadlock, is_dropped_connection
from prepbot.store.models import (
    PRIVATE_REPLY,
    Answer,
    Base,
    Community,
    DeletedReply,
    HeldReply,
    Member,
    Reply,
    Round,
    RoundStatus,
    RoundThread,
    Subscription,
)


class AnswerStatus(StrEnum):
    """What happened to a reply."""

    RECORDED = "recorded"
    HELD = "held"  # in a thread the bot is still posting; joins its round once that is known
    LATE = "late"
    DUPLICATE = "duplicate"
    EDITED = "edited"
    WITHDRAWN = "withdrawn"
    REMOVED = "removed"
    IGNORED = "ignored"


@dataclass(frozen=True)
class AnswerOutcome:
    """The result of handling one reply event."""

    status: AnswerStatus
    round_id: int | None = None
    private: bool = False
    """The round's group answers privately (its count changed; a thread reply is public)."""

    @property
    def newly_stored(self) -> bool | None:
        """Say whether a new answer was stored on time (True) or late (False); None if neither.

        Held replies came while the question was being posted, so before any reveal: on time.
        Platforms acknowledge a stored answer with a reaction by this.
        """
        return NEWLY_STORED.get(self.status)


PRIVATE = AnswerMode.PRIVATE
NEWLY_STORED = {AnswerStatus.RECORDED: True, AnswerStatus.HELD: True, AnswerStatus.LATE: False}
IGNORED = AnswerOutcome(AnswerStatus.IGNORED)
COUNT_CHANGES = {AnswerStatus.RECORDED, AnswerStatus.WITHDRAWN}
BATCH_LIMIT = 256  # new replies stored in one transaction, at most
# Batches of new replies stored at once: on PostgreSQL a second batch fills and goes while the
# first waits for the server; SQLite has one writer at a time, so a second would only wait.
OVERLAPPING_BATCHES = {"postgresql": WRITER_POOL}
HELD_FOR = timedelta(days=2)  # a held reply whose thread never became a round's is dropped
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Statements:
    """The statements that store a batch of replies, built once per dialect.

    Built once, each keeps its compiled form and cache key: a batch only binds values. They
    are Core statements run on the session's connection, so no ORM state is built per batch.
    """

    threads: Executable  # keys -> the posted or revealed round of each thread
    deleted: Executable  # keys -> (round, message) pairs deleted before
    members: Executable  # keys -> (community, external id) members known
    add_members: Executable
    rename_members: Executable
    answers: Executable  # keys -> (round, member) answers known (locked on PostgreSQL)
    add_answers: Executable
    add_late_answers: Executable  # returns the ones this call inserted
    add_replies: Executable  # returns the ones this call inserted
    reply_texts: Executable  # ids -> the replies of those answers, in posted order
    join_texts: Executable


@functools.cache
def _statements(dialect: str) -> _Statements:
    """Return the batch statements of ``dialect`` ('sqlite' or 'postgresql')."""
    tables = Base.metadata.tables
    rounds, threads, groups = tables["rounds"], tables["round_threads"], tables["subscriptions"]
    communities, members, answers = tables["communities"], tables["members"], tables["answers"]
    replies, deleted = tables["replies"], tables["deleted_replies"]
    keys: Any = bindparam("keys", expanding=True)
    by_thread = (
        select(
            rounds.c.id,
            rounds.c.status,
            groups.c.community_id,
            communities.c.platform,
            communities.c.external_id,
            groups.c.channel_id,
            threads.c.message_id,
            groups.c.answer_mode,
        )
        .select_from(
            rounds.join(threads, threads.c.round_id == rounds.c.id)
            .join(groups, groups.c.id == threads.c.subscription_id)
            .join(communities, communities.c.id == groups.c.community_id)
        )
        .where(
            tuple_(
                communities.c.platform,
                communities.c.external_id,
                groups.c.channel_id,
                threads.c.message_id,
            ).in_(keys),
            rounds.c.status.in_([RoundStatus.POSTED, RoundStatus.REVEALED]),
        )
        .order_by(rounds.c.id)
    )
    known_answers = select(answers.c.id, answers.c.round_id, answers.c.member_id, answers.c.on_time)
    known_answers = known_answers.where(tuple_(answers.c.round_id, answers.c.member_id).in_(keys))
    if dialect == "postgresql":
        by_thread = by_thread.with_for_update(read=True, of=rounds)  # a reveal waits for answers
        # Another process joining texts waits for us (and we for it, in id order).
        known_answers = known_answers.order_by(answers.c.id).with_for_update(of=answers)
    add_answer = insert_ignore(dialect, answers).on_conflict_do_nothing()
    return _Statements(
        threads=by_thread,
        deleted=select(deleted.c.round_id, deleted.c.message_id).where(
            tuple_(deleted.c.round_id, deleted.c.message_id).in_(keys)
        ),
        members=select(
            members.c.id, members.c.community_id, members.c.external_id, members.c.display_name
        ).where(tuple_(members.c.community_id, members.c.external_id).in_(keys)),
        add_members=insert_ignore(dialect, members).on_conflict_do_nothing(),
        rename_members=update(members)
        .where(members.c.id == bindparam("member_id"))
        .values(display_name=bindparam("name")),
        answers=known_answers,
        add_answers=add_answer,
        add_late_answers=add_answer.returning(answers.c.round_id, answers.c.member_id),
        add_replies=insert_ignore(dialect, replies)
        .on_conflict_do_nothing()
        .returning(replies.c.round_id, replies.c.message_id),
        reply_texts=select(
            replies.c.answer_id,
            replies.c.text,
            replies.c.posted_at,
            answers.c.updated_at,
            answers.c.first_reply_at,
        )
        .join(answers, answers.c.id == replies.c.answer_id)
        .where(replies.c.answer_id.in_(bindparam("ids", expanding=True)))
        .order_by(replies.c.answer_id, replies.c.posted_at, replies.c.id),
        join_texts=update(answers)
        .where(answers.c.id == bindparam("answer_id"))
        .values(
            text=bindparam("joined"), updated_at=bindparam("at"), first_reply_at=bindparam("first")
        ),
    )


# PostgreSQL runs the writer's hot statements through asyncpg directly, each taking arrays:
# one prepared statement whatever a batch's size, no `IN` list expanded per batch, none of
# SQLAlchemy's per-statement and per-row work (about a third of a batch's CPU before).
_PG_DELETED = """
SELECT d.round_id, d.message_id FROM deleted_replies AS d
JOIN unnest($1::integer[], $2::text[]) AS k(round_id, message_id)
  ON d.round_id = k.round_id AND d.message_id = k.message_id
"""
_PG_MEMBERS = """
SELECT m.id, m.community_id, m.external_id, m.display_name FROM members AS m
JOIN unnest($1::integer[], $2::text[]) AS k(community_id, external_id)
  ON m.community_id = k.community_id AND m.external_id = k.external_id
"""
_PG_ANSWERS = """
SELECT a.id, a.round_id, a.member_id, a.on_time FROM answers AS a
JOIN unnest($1::integer[], $2::integer[]) AS k(round_id, member_id)
  ON a.round_id = k.round_id AND a.member_id = k.member_id
ORDER BY a.id FOR UPDATE OF a
"""
_PG_ADD_MEMBERS = """
INSERT INTO members (community_id, external_id, display_name)
SELECT c, e, d FROM unnest($1::integer[], $2::text[], $3::text[]) WITH ORDINALITY AS k(c, e, d, n)
ORDER BY n
ON CONFLICT DO NOTHING
RETURNING id, community_id, external_id, display_name
"""
_PG_ADD_ANSWERS = """
INSERT INTO answers (round_id, member_id, on_time, text, first_reply_at, updated_at, points)
SELECT r, m, o, '', at, at, 0
FROM unnest($1::integer[], $2::integer[], $3::boolean[], $4::timestamptz[])
     WITH ORDINALITY AS k(r, m, o, at, n)
ORDER BY n
ON CONFLICT DO NOTHING
RETURNING id, round_id, member_id, on_time
"""
_PG_ADD_REPLIES = """
INSERT INTO replies (round_id, answer_id, message_id, text, posted_at, edited_at)
SELECT r, a, m, t, p, e FROM unnest(
  $1::integer[], $2::integer[], $3::text[], $4::text[], $5::timestamptz[], $6::timestamptz[]
) WITH ORDINALITY AS k(r, a, m, t, p, e, n)
ORDER BY n
ON CONFLICT DO NOTHING
RETURNING round_id, message_id
"""
# An answer's text is its replies in posted order, joined on the server: its earlier replies'
# texts never travel to the bot and back.
_PG_JOIN = """
UPDATE answers AS a
SET text = j.joined,
    first_reply_at = LEAST(a.first_reply_at, j.first),
    updated_at = GREATEST(a.updated_at, k.at)
FROM unnest($1::integer[], $2::timestamptz[]) AS k(answer_id, at)
JOIN (
  SELECT answer_id, string_agg(text, E'\\n\\n' ORDER BY posted_at, id) AS joined,
         min(posted_at) AS first
  FROM replies WHERE answer_id = ANY($1::integer[]) GROUP BY answer_id
) AS j ON j.answer_id = k.answer_id
WHERE a.id = k.answer_id
"""


@dataclass(frozen=True)
class _Thread:
    """What storing a reply needs to know of its thread's round."""

    round_id: int
    status: str
    community_id: int
    private: bool


@dataclass
class _Pending:
    """One event waiting in the queue, and the caller waiting for its outcome."""

    event: ThreadReply | ReplyEdited | ReplyDeleted | PrivateAnswer
    handle: Callable[[], Awaitable[AnswerOutcome]]
    done: asyncio.Future[AnswerOutcome] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )

    @property
    def batchable(self) -> bool:
        """Say whether this is a new reply, which can be stored with others."""
        return type(self.event) is ThreadReply


class AnswerService:
    """Turn thread events into stored answers."""

    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx
        self._queue: asyncio.Queue[_Pending] | None = None
        self._writer: asyncio.Task[None] | None = None
        # Told the ids of answers whose text changed, once stored (feedback grades them early).
        self.on_changed: Callable[[list[int]], None] | None = None
        # Told the ids of private-mode rounds whose answers came or went (their count shows it).
        self.on_counted: Callable[[set[int]], None] | None = None
        # Told of a reply stored in the thread of a private-mode round (it is public there).
        self.on_public_reply: Callable[[ThreadReply | ReplyEdited, int], None] | None = None

    async def record(self, reply: ThreadReply | ReplyEdited) -> AnswerOutcome:
        """Store a reply as (part of) the member's answer; replays change nothing."""
        outcome = await self._queued(reply, lambda: self._record(reply))
        public = outcome.private and outcome.status == AnswerStatus.RECORDED
        if public and outcome.round_id is not None and self.on_public_reply is not None:
            try:
                self.on_public_reply(reply, outcome.round_id)
            except Exception as error:  # stored all the same; only the reminder is missing
                log.warning("could not remind of a public reply: %r", error)
        return outcome

    async def edit(self, edit: ReplyEdited) -> AnswerOutcome:
        """Update the answer a reply belongs to; an edit of an unseen reply records it."""
        return await self._queued(edit, lambda: self._edit(edit))

    async def withdraw(self, deleted: ReplyDeleted) -> AnswerOutcome:
        """Remove a deleted reply; with none left the answer is withdrawn (or a late one removed).

        An on-time answer of a round already revealed stays: its streak credit is history.
        """
        return await self._queued(deleted, lambda: self._withdraw(deleted))

    async def answer_privately(self, answer: PrivateAnswer) -> AnswerOutcome:
        """Store, replace or (with no text) withdraw a member's private answer; exactly once.

        Committed before this returns, so the platform is acknowledged only after. The
        submission's id is remembered (as a reply, or as a withdrawn one), so the same
        submission delivered again, or an older one replayed after an edit, changes nothing.
        """
        return await self._queued(answer, lambda: self._answer_privately(answer))

    async def private_answer(self, place: Place, thread_id: str | None, member_id: str) -> str:
        """Return the private answer a member has stored for a round ('' if none): to edit it."""
        async with self.ctx.db.transaction() as session:
            found = await self._round_for(session, place, thread_id)
            if found is None:
                return ""
            texts = await session.scalars(
                select(Reply.text)
                .join(Answer, Answer.id == Reply.answer_id)
                .join(Member, Member.id == Answer.member_id)
                .where(
                    Reply.round_id == found[0].id,
                    Member.community_id == found[1],
                    Member.external_id == member_id,
                    Reply.message_id.startswith(PRIVATE_REPLY, autoescape=True),
                )
                .order_by(Reply.posted_at, Reply.id)
            )
            return "\n\n".join(texts.all())

    async def _round_for(
        self, session: AsyncSession, place: Place, thread_id: str | None
    ) -> tuple[Round, int, bool] | None:
        """Return the round of a question message, or (no message) the channel's open round.

        A message that is no round's thread (the Answer button on a copy of the question, such
        as ``/prep today``'s private one) stands for the channel's open round too.
        """
        if thread_id is not None:
            key = (place.platform, place.community_id, place.channel_id, thread_id)
            found = (await self._rounds_of(session, {key})).get(key)
            if found is not None:
                return found
        latest = await session.scalar(
            select(RoundThread.message_id)
            .join(Round, Round.id == RoundThread.round_id)
            .join(Subscription, Subscription.id == RoundThread.subscription_id)
            .join(Community, Community.id == Subscription.community_id)
            .where(
                Community.platform == place.platform,
                Community.external_id == place.community_id,
                Subscription.channel_id == place.channel_id,
                Round.status == RoundStatus.POSTED,
            )
            .order_by(Round.local_date.desc(), Round.id.desc())
            .limit(1)
        )
        if latest is None:
            return None
        key = (place.platform, place.community_id, place.channel_id, latest)
        return (await self._rounds_of(session, {key})).get(key)

    async def _answer_privately(self, answer: PrivateAnswer) -> AnswerOutcome:
        text = answer.text.strip()
        message_id = PRIVATE_REPLY + answer.submission_id
        async with self.ctx.db.deciding() as session:  # the round's status holds till commit
            found = await self._round_for(session, answer.place, answer.thread_id)
            if found is None:
                return IGNORED
            round_, community, private = found
            seen = await session.scalar(
                select(DeletedReply.message_id).where(
                    DeletedReply.round_id == round_.id, DeletedReply.message_id == message_id
                )
            ) or await self._reply(session, round_, message_id)
            if seen is not None:
                return AnswerOutcome(AnswerStatus.DUPLICATE, round_.id, private=private)
            members = await self._members_of(
                session, {(community, answer.member.id): answer.member.name}
            )
            member_id = members[(community, answer.member.id)]
            existing = await session.scalar(
                select(Answer).where(Answer.round_id == round_.id, Answer.member_id == member_id)
            )
            before = []
            if existing is not None:
                before = list(
                    (
                        await session.scalars(
                            select(Reply).where(
                                Reply.answer_id == existing.id,
                                Reply.message_id.startswith(PRIVATE_REPLY, autoescape=True),
                            )
                        )
                    ).all()
                )
            if any(r.message_id == message_id for r in before):  # stored meanwhile (a replica)
                return AnswerOutcome(AnswerStatus.DUPLICATE, round_.id, private=private)
            # Every submission id is remembered: the ones replaced here, and a withdrawal's own.
            gone = [r.message_id for r in before] + ([] if text else [message_id])
            if gone:
                await session.execute(
                    self.ctx.insert_ignore(DeletedReply).on_conflict_do_nothing(),
                    [
                        {"round_id": round_.id, "message_id": m, "deleted_at": answer.at}
                        for m in gone
                    ],
                )
            for reply in before:
                await session.delete(reply)
            await session.flush()
            if not text:
                outcome = await self._after_withdrawal(session, round_, existing, answer)
                return replace(outcome, private=private)
            if existing is None:
                answers = await self._answers_of(
                    session,
                    {(round_.id, member_id): (round_.status == RoundStatus.POSTED, answer.at)},
                )
                answer_id, on_time = answers[(round_.id, member_id)]
                status = AnswerStatus.RECORDED if on_time else AnswerStatus.LATE
            else:
                answer_id = existing.id
                status = AnswerStatus.EDITED
            added = await session.scalar(
                self.ctx.insert_ignore(Reply)
                .values(
                    round_id=round_.id,
                    answer_id=answer_id,
                    message_id=message_id,
                    text=text,
                    posted_at=answer.at,
                )
                .on_conflict_do_nothing()
                .returning(Reply.id)
            )
            if added is None:  # another process stored this very submission since we looked
                return AnswerOutcome(AnswerStatus.DUPLICATE, round_.id, private=private)
            await self._join_many(session, {answer_id: answer.at})
        self._changed([answer_id])
        return AnswerOutcome(status, round_.id, private=private)

    async def _after_withdrawal(
        self,
        session: AsyncSession,
        round_: Round,
        answer: Answer | None,
        event: PrivateAnswer | ReplyDeleted,
    ) -> AnswerOutcome:
        """Settle an answer one of whose replies was just removed: rejoin, keep or delete it.

        An on-time answer of a round already revealed stays: its streak credit is history.
        """
        if answer is None:
            return AnswerOutcome(AnswerStatus.IGNORED, round_.id)
        remaining = await session.scalar(
            select(func.count()).select_from(Reply).where(Reply.answer_id == answer.id)
        )
        if remaining:
            await self._join_replies(session, answer, event)
            return AnswerOutcome(AnswerStatus.EDITED, round_.id)
        if round_.status == RoundStatus.REVEALED and answer.on_time:
            answer.updated_at = event.at
            return AnswerOutcome(AnswerStatus.EDITED, round_.id)
        await session.execute(delete(Answer).where(Answer.id == answer.id))
        if round_.status == RoundStatus.REVEALED and not answer.on_time:
            await self._tally_late(session, [(round_.id, answer.member_id)], -1)
        status = AnswerStatus.WITHDRAWN if answer.on_time else AnswerStatus.REMOVED
        return AnswerOutcome(status, round_.id)

    async def close(self) -> None:
        """Finish the events already queued, then stop the writer."""
        writer, self._writer = self._writer, None
        if writer is None or writer.done():
            return
        assert self._queue is not None
        with contextlib.suppress(RuntimeError):  # the writer's loop is gone: nothing to finish
            await self._queue.join()
        writer.cancel()
        with contextlib.suppress(asyncio.CancelledError, RuntimeError):
            await writer

    async def _queued(
        self,
        event: ThreadReply | ReplyEdited | ReplyDeleted | PrivateAnswer,
        handle: Callable[[], Awaitable[AnswerOutcome]],
    ) -> AnswerOutcome:
        """Queue an event behind those that came before it; return once it is committed.

        One writer drains the queue. On PostgreSQL up to ``OVERLAPPING_BATCHES`` batches of
        new replies are stored at once, each in its own transaction (the locks that keep
        replicas apart keep them apart too); an edit, a deletion or a private answer waits
        for every batch before it. Once pacing reactions took most of the CPU per answer
        off the event loop, a batch's wall time was mostly waiting for the server: a second
        batch storing meanwhile took PostgreSQL from ~990 to ~1,150 answers/s.
        """
        loop = asyncio.get_running_loop()
        if self._writer is None or self._writer.done() or self._writer.get_loop() is not loop:
            self._queue = asyncio.Queue()
            self._writer = loop.create_task(self._write(self._queue), name="answer-writer")
        assert self._queue is not None
        pending = _Pending(event, handle)
        self._queue.put_nowait(pending)
        return self._counted(await asyncio.shield(pending.done))

    async def _write(self, queue: asyncio.Queue[_Pending]) -> None:
        """Handle queued events in arrival order; new replies waiting together in one batch."""
        carried: _Pending | None = None
        storing: set[asyncio.Task[None]] = set()
        overlap = OVERLAPPING_BATCHES.get(self.ctx.db.dialect, 1)
        while True:
            first, carried = carried or await queue.get(), None
            batch = [first]
            while first.batchable and len(batch) < BATCH_LIMIT and not queue.empty():
                following = queue.get_nowait()
                if not following.batchable:
                    carried = following  # an edit or deletion waits for the replies before it
                    break
                batch.append(following)
            if not first.batchable:  # after every batch of replies before it
                if storing:
                    await asyncio.wait(storing)
                await self._settle_in_turn(queue, batch)
                continue
            task = asyncio.create_task(self._settle_in_turn(queue, batch))
            storing.add(task)
            task.add_done_callback(storing.discard)
            if len(storing) >= overlap:
                await asyncio.wait(storing, return_when=asyncio.FIRST_COMPLETED)

    async def _settle_in_turn(self, queue: asyncio.Queue[_Pending], batch: list[_Pending]) -> None:
        """Settle one batch taken from the queue, then mark its events done there."""
        try:
            if len(batch) == 1:
                await self._settle(batch[0])
            else:
                await self._settle_batch(batch)
        finally:
            for pending in batch:
                if not pending.done.done():  # never leave a caller waiting (a bug, or cancelled)
                    pending.done.set_exception(RuntimeError("the answer writer stopped"))
                queue.task_done()

    async def _settle(self, pending: _Pending) -> None:
        """Handle one event and hand its outcome (or error) to the caller."""
        try:
            outcome = await pending.handle()
        except Exception as error:
            if not pending.done.done():
                pending.done.set_exception(error)
        else:
            if not pending.done.done():
                pending.done.set_result(outcome)

    async def _settle_batch(self, batch: list[_Pending]) -> None:
        """Store new replies together; if that fails, store each alone (one bad one fails alone)."""
        replies = [p.event for p in batch if isinstance(p.event, ThreadReply)]
        try:
            outcomes = await self._record_many(replies)
        except Exception:
            log.warning("storing %d replies together failed; storing each alone", len(batch))
            for pending in batch:
                await self._settle(pending)
            return
        for pending, outcome in zip(batch, outcomes, strict=True):
            if not pending.done.done():
                pending.done.set_result(outcome)

    def _counted(self, outcome: AnswerOutcome) -> AnswerOutcome:
        self.ctx.metrics.answers.labels(outcome.status.value).inc()
        counted = outcome.private and outcome.status in COUNT_CHANGES
        if counted and outcome.round_id is not None and self.on_counted is not None:
            try:
                self.on_counted({outcome.round_id})
            except Exception as error:  # stored all the same; the next change shows it
                log.warning("could not update round %s's count: %r", outcome.round_id, error)
        return outcome

    async def _record(self, reply: ThreadReply | ReplyEdited) -> AnswerOutcome:
        """Store one reply (or an edit of a reply never seen) as a batch of one."""
        return (await self._record_many([reply]))[0]

    async def _record_many(
        self, replies: Sequence[ThreadReply | ReplyEdited]
    ) -> list[AnswerOutcome]:
        """Store replies in one transaction with a few statements; outcomes in order.

        The same rows, texts, on-time flags and outcomes as storing them one after another in
        this order. A member's answer is the texts of their replies in posted order. A
        connection the database dropped (the writer does not ping before a batch) is
        replaced and the batch stored again: its transaction never committed.
        """
        try:
            return await self._store_replies(replies)
        except Exception as error:
            if is_dropped_connection(error):
                why = "the database dropped a connection"
            elif is_deadlock(error):  # batches (or replicas) locking one member's rows
                why = "the database broke a deadlock between batches"
            else:
                raise
            log.info("%s; storing %d replies again", why, len(replies))
            return await self._store_replies(replies)

    async def _store_replies(
        self, replies: Sequence[ThreadReply | ReplyEdited]
    ) -> list[AnswerOutcome]:
        """Store replies in one transaction (``_record_many`` without its one retry)."""
        outcomes: list[AnswerOutcome] = [IGNORED] * len(replies)
        wanted = [(i, r) for i, r in enumerate(replies) if not r.is_bot and r.text.strip()]
        if not wanted:
            return outcomes
        async with self.ctx.db.writing() as session:  # the round's status holds till commit
            rounds = await self._threads_of(session, {_thread_key(r) for _, r in wanted})
            unknown = [(i, r) for i, r in wanted if _thread_key(r) not in rounds]
            if unknown:
                held = set(await self._hold(session, unknown))
                for i in held:
                    outcomes[i] = AnswerOutcome(AnswerStatus.HELD)
                # No round is being posted there now: one may have been stored since the first
                # look, and its thread is known now. Look again, or the reply would be lost.
                again = {_thread_key(r) for i, r in unknown if i not in held}
                if again:
                    rounds.update(await self._threads_of(session, again))
            found = [(i, r, rounds[_thread_key(r)]) for i, r in wanted if _thread_key(r) in rounds]
            found = [f for f in found if outcomes[f[0]].status != AnswerStatus.HELD]
            if not found:
                return outcomes
            pairs = sorted({(thread.round_id, r.message_id) for _, r, thread in found})
            deleted = await self._deleted_of(session, pairs)
            for i, r, thread in found:
                if (thread.round_id, r.message_id) in deleted:
                    outcomes[i] = AnswerOutcome(AnswerStatus.DUPLICATE, thread.round_id)
            found = [f for f in found if (f[2].round_id, f[1].message_id) not in deleted]
            if not found:
                return outcomes
            members = await self._members_of(
                session,
                {(thread.community_id, r.member.id): r.member.name for _, r, thread in found},
            )
            answers = await self._answers_of(
                session,
                {
                    (thread.round_id, members[(thread.community_id, r.member.id)]): (
                        thread.status == RoundStatus.POSTED,
                        r.at,
                    )
                    for _, r, thread in reversed(found)  # the first reply's time
                },
            )
            rows: dict[tuple[int, str], dict[str, Any]] = {}
            for _, r, thread in found:
                answer_id = answers[(thread.round_id, members[(thread.community_id, r.member.id)])][
                    0
                ]
                rows.setdefault(
                    (thread.round_id, r.message_id),
                    {
                        "round_id": thread.round_id,
                        "answer_id": answer_id,
                        "message_id": r.message_id,
                        "text": r.text.strip(),
                        "posted_at": r.at,
                        "edited_at": r.at if isinstance(r, ReplyEdited) else None,
                    },
                )
            ordered = sorted(rows.values(), key=lambda row: row["message_id"])
            stored = await self._add_replies(session, ordered)
            latest: dict[int, datetime] = {}
            for i, r, thread in found:
                member_id = members[(thread.community_id, r.member.id)]
                answer_id, on_time = answers[(thread.round_id, member_id)]
                key = (thread.round_id, r.message_id)
                if key in stored:
                    stored.discard(key)  # a second copy of it in this batch is a replay
                    latest[answer_id] = max(latest.get(answer_id, r.at), r.at)
                    status = AnswerStatus.RECORDED if on_time else AnswerStatus.LATE
                    outcomes[i] = AnswerOutcome(status, thread.round_id, private=thread.private)
                else:
                    outcomes[i] = AnswerOutcome(AnswerStatus.DUPLICATE, thread.round_id)
            await self._join_many(session, latest)
        self._changed(list(latest))
        return outcomes

    def _changed(self, answer_ids: list[int]) -> None:
        """Tell the listener which answers' texts changed (after the commit, never failing it)."""
        if self.on_changed is not None and answer_ids:
            try:
                self.on_changed(answer_ids)
            except Exception as error:  # stored all the same; the reveal grades it
                log.warning("could not pass on %s changed answers: %r", len(answer_ids), error)

    async def _threads_of(
        self, session: AsyncSession, keys: set[tuple[str, str, str, str]]
    ) -> dict[tuple[str, str, str, str], _Thread]:
        """Return the posted or revealed round (and its community) of each thread key.

        Any thread the bot posted for a round counts (a round posted twice has two). On
        PostgreSQL the rounds are share-locked: a reveal waits for the answers being stored.
        """
        connection = await session.connection()
        sql = _statements(self.ctx.db.dialect)
        rows = await connection.execute(sql.threads, {"keys": sorted(keys)})
        found: dict[tuple[str, str, str, str], _Thread] = {}
        for round_id, status, community, platform, external, channel, thread, mode in rows:
            found.setdefault(
                (platform, external, channel, thread),
                _Thread(round_id, status, community, mode == PRIVATE),
            )
        return found

    async def _rounds_of(
        self, session: AsyncSession, keys: set[tuple[str, str, str, str]]
    ) -> dict[tuple[str, str, str, str], tuple[Round, int, bool]]:
        """Return the round of each thread key (as ``_threads_of``), loaded to change it."""
        found = {}
        for key, thread in (await self._threads_of(session, keys)).items():
            round_ = await session.get(Round, thread.round_id)
            assert round_ is not None  # locked (PostgreSQL) or in this process's turn (SQLite)
            found[key] = (round_, thread.community_id, thread.private)
        return found

    async def _hold(
        self, session: AsyncSession, replies: list[tuple[int, ThreadReply | ReplyEdited]]
    ) -> list[int]:
        """Keep replies in threads of channels whose round is being posted; return their indexes.

        While a post is in flight the platform may already show the question (a slow answer,
        a lost one), and members reply before the bot knows the thread. Those replies are
        stored now, so they may be acknowledged, and join the round once its thread is known.
        """
        places = {_thread_key(r)[:3] for _, r in replies}
        posting = (
            await session.execute(
                select(
                    Subscription.id,
                    Community.platform,
                    Community.external_id,
                    Subscription.channel_id,
                )
                .join(Community, Community.id == Subscription.community_id)
                .join(Round, Round.subscription_id == Subscription.id)
                .where(
                    tuple_(Community.platform, Community.external_id, Subscription.channel_id).in_(
                        places
                    ),
                    Round.status == RoundStatus.CLAIMED,
                )
            )
        ).all()
        subscription_of = {(p, e, c): s for s, p, e, c in posting}
        held: dict[tuple[int, str, str], dict[str, Any]] = {}
        for i, r in replies:
            subscription_id = subscription_of.get(_thread_key(r)[:3])
            if subscription_id is None:
                continue
            held[(subscription_id, r.thread_id, r.message_id)] = {
                "subscription_id": subscription_id,
                "thread_id": r.thread_id,
                "message_id": r.message_id,
                "member_external_id": r.member.id,
                "member_name": r.member.name,
                "text": r.text.strip(),
                "posted_at": r.at,
                "edited": isinstance(r, ReplyEdited),
                "index": i,
            }
        if not held:
            return []
        rows = [{k: v for k, v in row.items() if k != "index"} for row in held.values()]
        upsert = self.ctx.insert_ignore(HeldReply.__table__)
        await session.execute(
            upsert.on_conflict_do_update(
                index_elements=["subscription_id", "thread_id", "message_id"],
                set_={"text": upsert.excluded.text, "edited": upsert.excluded.edited},
            ),
            rows,
        )
        return [row["index"] for row in held.values()]

    async def adopt(self, subscription_id: int, thread_id: str) -> int:
        """Store the replies held for a thread that is now a round's; return how many."""
        async with self.ctx.db.transaction() as session:
            held = (
                await session.execute(
                    select(
                        HeldReply,
                        Community.platform,
                        Community.external_id,
                        Subscription.channel_id,
                    )
                    .join(Subscription, Subscription.id == HeldReply.subscription_id)
                    .join(Community, Community.id == Subscription.community_id)
                    .where(
                        HeldReply.subscription_id == subscription_id,
                        HeldReply.thread_id == thread_id,
                    )
                    .order_by(HeldReply.posted_at, HeldReply.message_id)
                )
            ).all()
        for row, platform, community, channel in held:
            kind = ReplyEdited if row.edited else ThreadReply
            await self.record(
                kind(
                    Place(platform, community, channel),
                    thread_id,
                    row.message_id,
                    MemberRef(row.member_external_id, row.member_name),
                    row.text,
                    row.posted_at,
                )
            )
        if held:  # stored (or found stored) above: a crash before this adopts them again
            async with self.ctx.db.transaction() as session:
                await session.execute(
                    delete(HeldReply).where(
                        HeldReply.subscription_id == subscription_id,
                        HeldReply.thread_id == thread_id,
                        HeldReply.message_id.in_([row.message_id for row, *_ in held]),
                    )
                )
            log.info("%d replies held for thread %s joined their round", len(held), thread_id)
        return len(held)

    async def adopt_held(self) -> int:
        """Adopt held replies whose thread is known now; drop those held too long for none."""
        async with self.ctx.db.transaction() as session:
            known = (
                await session.execute(
                    select(HeldReply.subscription_id, HeldReply.thread_id)
                    .join(
                        RoundThread,
                        (RoundThread.subscription_id == HeldReply.subscription_id)
                        & (RoundThread.message_id == HeldReply.thread_id),
                    )
                    .distinct()
                )
            ).all()
            await session.execute(
                delete(HeldReply).where(HeldReply.posted_at < self.ctx.clock.now() - HELD_FOR)
            )
        adopted = 0
        for subscription_id, thread_id in known:
            adopted += await self.adopt(subscription_id, thread_id)
        return adopted

    async def _driver(self, session: AsyncSession) -> Any | None:
        """Return the asyncpg connection of a PostgreSQL session's transaction (None: SQLite)."""
        return await driver_connection(session) if self.ctx.db.dialect == "postgresql" else None

    async def _deleted_of(
        self, session: AsyncSession, pairs: list[tuple[int, str]]
    ) -> set[tuple[int, str]]:
        """Return which (round, message) pairs were replies deleted before."""
        sql = _statements(self.ctx.db.dialect)
        return set(await self._rows_by_key(session, _PG_DELETED, sql.deleted, pairs))

    async def _rows_by_key(
        self, session: AsyncSession, by_arrays: str, by_core: Executable, keys: Sequence[Any]
    ) -> list[Any]:
        """Return the rows of (column, column) ``keys``: PostgreSQL's array SQL, or Core's."""
        if (driver := await self._driver(session)) is not None:
            return [tuple(row) for row in await driver.fetch(by_arrays, *_columns(keys, 2))]
        connection = await session.connection()
        return [tuple(row) for row in await connection.execute(by_core, {"keys": keys})]

    async def _add_replies(
        self, session: AsyncSession, rows: list[dict[str, Any]]
    ) -> set[tuple[int, str]]:
        """Insert replies not stored yet, in order; return the (round, message) pairs inserted."""
        if (driver := await self._driver(session)) is not None:
            names = ("round_id", "answer_id", "message_id", "text", "posted_at", "edited_at")
            values = [[row[name] for name in names] for row in rows]
            found = await driver.fetch(_PG_ADD_REPLIES, *_columns(values, len(names)))
            return {(r, m) for r, m in found}
        connection = await session.connection()
        sql = _statements(self.ctx.db.dialect)
        return set((await connection.execute(sql.add_replies, rows)).all())

    async def _known_members(
        self, session: AsyncSession, keys: list[tuple[int, str]]
    ) -> list[tuple[int, int, str, str]]:
        """Return (id, community, external id, display name) of the members known of ``keys``."""
        sql = _statements(self.ctx.db.dialect)
        return await self._rows_by_key(session, _PG_MEMBERS, sql.members, keys)

    async def _members_of(
        self, session: AsyncSession, names: dict[tuple[int, str], str]
    ) -> dict[tuple[int, str], int]:
        """Create members on first sight, keep display names current; return their ids."""
        connection = await session.connection()
        sql = _statements(self.ctx.db.dialect)
        rows = await self._known_members(session, sorted(names))
        missing = sorted(names.keys() - {(c, e) for _, c, e, _ in rows})
        if missing:
            rows += await self._add_members(session, [(c, e, names[(c, e)]) for c, e in missing])
            if raced := sorted(set(missing) - {(c, e) for _, c, e, _ in rows}):
                rows += await self._known_members(session, raced)  # another process's
        renamed = [  # in id order, as every batch locks them
            {"member_id": id_, "name": names[(c, e)]}
            for id_, c, e, shown in sorted(rows)
            if names[(c, e)] and names[(c, e)] != shown
        ]
        if renamed:
            await connection.execute(sql.rename_members, renamed)
        return {(c, e): id_ for id_, c, e, _ in rows}

    async def _tally_late(
        self, session: AsyncSession, answers: Sequence[tuple[int, int]], change: int
    ) -> None:
        """Count late answers (round, member) stored (+1) or removed (-1) on the leaderboards."""
        if not answers:
            return
        rounds = {
            round_id: (subscription_id, day)
            for round_id, subscription_id, day in (
                await session.execute(
                    select(Round.id, Round.subscription_id, Round.local_date).where(
                        Round.id.in_({round_id for round_id, _ in answers})
                    )
                )
            ).all()
        }
        await tallies.add_rows(
            session,
            self.ctx.db.dialect,
            [
                (rounds[round_id][0], member_id, rounds[round_id][1], (0, change, 0))
                for round_id, member_id in answers
            ],
        )

    async def _answers_of(
        self, session: AsyncSession, wanted: dict[tuple[int, int], tuple[bool, datetime]]
    ) -> dict[tuple[int, int], tuple[int, bool]]:
        """Create each (round, member) answer not there yet; return ids and on-time flags."""
        rows = await self._known_answers(session, sorted(wanted))
        missing = sorted(wanted.keys() - {(r, m) for _, r, m, _ in rows})
        if missing:
            made = await self._add_answers(session, [(r, m, *wanted[(r, m)]) for r, m in missing])
            # Late answers (to revealed rounds) count on the leaderboards as they come.
            await self._tally_late(
                session, [(r, m) for _, r, m, on_time in made if not on_time], +1
            )
            rows += made
            if raced := sorted(set(missing) - {(r, m) for _, r, m, _ in made}):
                rows += await self._known_answers(session, raced)  # another process's
        return {(r, m): (id_, bool(on_time)) for id_, r, m, on_time in rows}

    async def _add_members(
        self, session: AsyncSession, new: list[tuple[int, str, str]]
    ) -> list[tuple[int, int, str, str]]:
        """Insert (community, external id, name) members; return the rows this inserted."""
        if (driver := await self._driver(session)) is not None:
            return [tuple(row) for row in await driver.fetch(_PG_ADD_MEMBERS, *_columns(new, 3))]
        connection = await session.connection()  # one cached statement, multi-row VALUES
        names = ("community_id", "external_id", "display_name")
        added = [dict(zip(names, member, strict=True)) for member in new]
        await connection.execute(_statements(self.ctx.db.dialect).add_members, added)
        return await self._known_members(session, [(c, e) for c, e, _ in new])  # one writer

    async def _add_answers(
        self, session: AsyncSession, new: list[tuple[int, int, bool, datetime]]
    ) -> list[tuple[int, int, int, bool]]:
        """Insert (round, member, on time, first reply's time) answers; return those inserted."""
        if (driver := await self._driver(session)) is not None:
            return [tuple(row) for row in await driver.fetch(_PG_ADD_ANSWERS, *_columns(new, 4))]
        connection = await session.connection()
        sql = _statements(self.ctx.db.dialect)
        rows = [
            {
                "round_id": round_id,
                "member_id": member_id,
                "on_time": on_time,
                "text": "",
                "first_reply_at": at,
                "updated_at": at,
            }
            for round_id, member_id, on_time, at in new
        ]
        if on_time := [row for row in rows if row["on_time"]]:
            await connection.execute(sql.add_answers, on_time)
        made = set()
        if late := [row for row in rows if not row["on_time"]]:
            made = set((await connection.execute(sql.add_late_answers, late)).all())
        known = await self._known_answers(session, [(r, m) for r, m, _, _ in new])
        return [row for row in known if row[3] or (row[1], row[2]) in made]

    async def _known_answers(
        self, session: AsyncSession, keys: list[tuple[int, int]]
    ) -> list[tuple[int, int, int, bool]]:
        """Return (id, round, member, on time) of the answers known of ``keys``, locked on PG."""
        sql = _statements(self.ctx.db.dialect)
        return await self._rows_by_key(session, _PG_ANSWERS, sql.answers, keys)

    async def _join_many(self, session: AsyncSession, latest: dict[int, datetime]) -> None:
        """Make each answer's text its replies in posted order; move its updated time on."""
        if not latest:
            return
        if (driver := await self._driver(session)) is not None:
            ordered = sorted(latest.items())
            await driver.execute(_PG_JOIN, *_columns(ordered, 2))
            return
        connection = await session.connection()
        sql = _statements(self.ctx.db.dialect)
        texts: dict[int, list[str]] = {}
        updated: dict[int, datetime] = {}
        first: dict[int, datetime] = {}  # its earliest reply: a batch stored side by side with
        # an earlier one may have created the answer from a later reply of the member's
        for answer_id, text, posted_at, updated_at, first_reply_at in await connection.execute(
            sql.reply_texts, {"ids": sorted(latest)}
        ):
            texts.setdefault(answer_id, []).append(text)
            updated[answer_id] = updated_at
            first[answer_id] = min(first.get(answer_id, first_reply_at), posted_at)
        await connection.execute(
            sql.join_texts,
            [
                {
                    "answer_id": answer_id,
                    "joined": "\n\n".join(texts[answer_id]),
                    "at": max(updated[answer_id], at),
                    "first": first[answer_id],
                }
                for answer_id, at in sorted(latest.items())
            ],
        )

    async def _edit(self, edit: ReplyEdited) -> AnswerOutcome:
        if edit.is_bot:
            return IGNORED
        async with self.ctx.db.deciding() as session:  # the round's status holds till commit
            round_ = await self._round_of(session, edit.place, edit.thread_id)
            if round_ is None:
                return IGNORED
            stored = await self._reply(session, round_, edit.message_id)
            if stored is not None:
                answer = await session.get(Answer, stored.answer_id)
                assert answer is not None
                if not edit.text.strip():
                    return AnswerOutcome(AnswerStatus.IGNORED, round_.id)
                latest = stored.edited_at or stored.posted_at
                if edit.at <= latest and stored.edited_at is not None:
                    return AnswerOutcome(AnswerStatus.DUPLICATE, round_.id)  # older or replayed
                stored.text = edit.text.strip()
                stored.edited_at = edit.at
                await self._join_replies(session, answer, edit)
                edited = (answer.id, AnswerOutcome(AnswerStatus.EDITED, round_.id))
        if stored is not None:
            self._changed([edited[0]])
            return edited[1]
        return await self._record(edit)

    async def _withdraw(self, deleted: ReplyDeleted) -> AnswerOutcome:
        async with self.ctx.db.deciding() as session:  # the round's status holds till commit
            key = _thread_key(deleted)
            found = (await self._rounds_of(session, {key})).get(key)
            if found is None:
                await self._unhold(session, deleted)
                return IGNORED
            round_, _, private = found
            await session.execute(
                self.ctx.insert_ignore(DeletedReply)
                .values(round_id=round_.id, message_id=deleted.message_id, deleted_at=deleted.at)
                .on_conflict_do_nothing()
            )
            stored = await self._reply(session, round_, deleted.message_id)
            if stored is None:
                return AnswerOutcome(AnswerStatus.IGNORED, round_.id)
            answer = await session.get(Answer, stored.answer_id)
            assert answer is not None
            await session.delete(stored)
            await session.flush()
            outcome = await self._after_withdrawal(session, round_, answer, deleted)
            return replace(outcome, private=private)

    @staticmethod
    async def _unhold(session: AsyncSession, deleted: ReplyDeleted) -> None:
        """Forget a held reply that was deleted before its thread became known."""
        place = deleted.place
        await session.execute(
            delete(HeldReply).where(
                HeldReply.thread_id == deleted.thread_id,
                HeldReply.message_id == deleted.message_id,
                HeldReply.subscription_id.in_(
                    select(Subscription.id)
                    .join(Community, Community.id == Subscription.community_id)
                    .where(
                        Community.platform == place.platform,
                        Community.external_id == place.community_id,
                        Subscription.channel_id == place.channel_id,
                    )
                ),
            )
        )

    async def _round_of(self, session: AsyncSession, place: Place, thread_id: str) -> Round | None:
        """Return the posted or revealed round whose question message is ``thread_id``."""
        key = (place.platform, place.community_id, place.channel_id, thread_id)
        found = (await self._rounds_of(session, {key})).get(key)
        return found[0] if found is not None else None

    @staticmethod
    async def _reply(session: AsyncSession, round_: Round, message_id: str) -> Reply | None:
        """Return the stored reply of a platform message in a round's thread."""
        return await session.scalar(
            select(Reply).where(Reply.round_id == round_.id, Reply.message_id == message_id)
        )

    async def _join_replies(
        self,
        session: AsyncSession,
        answer: Answer,
        event: ThreadReply | ReplyEdited | ReplyDeleted | PrivateAnswer,
    ) -> None:
        """Make an answer's text the member's replies in the order they were posted."""
        await session.flush()
        if self.ctx.db.dialect == "postgresql":  # wait for another process joining this answer
            latest = await session.scalar(
                select(Answer.updated_at).where(Answer.id == answer.id).with_for_update()
            )
            answer.updated_at = latest or answer.updated_at
        texts = (
            await session.scalars(
                select(Reply.text)
                .where(Reply.answer_id == answer.id)
                .order_by(Reply.posted_at, Reply.id)
            )
        ).all()
        answer.text = "\n\n".join(texts)
        answer.updated_at = max(answer.updated_at, event.at)


def _thread_key(reply: ThreadReply | ReplyEdited | ReplyDeleted) -> tuple[str, str, str, str]:
    """Return what identifies a reply's thread: platform, community, channel, thread."""
    place = reply.place
    return (place.platform, place.community_id, place.channel_id, reply.thread_id)


def _columns(rows: Sequence[Sequence[Any]], width: int) -> list[list[Any]]:
    """Turn rows into ``width`` column lists: the array parameters of a PostgreSQL statement.

    A naive datetime is refused, as ``UTCDateTime`` refuses it on the Core path: asyncpg
    would take it as the host's local time and store it shifted.
    """
    columns = [[row[n] for row in rows] for n in range(width)]
    for column in columns:
        if column and isinstance(column[0], datetime) and any(at.tzinfo is None for at in column):
            raise ValueError("naive datetimes are not stored; give a timezone-aware one")
    return columns
