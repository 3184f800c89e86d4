"""Rounds and answers through the services: nothing posted twice, lost, or counted wrongly."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from prepbot.app import App
from prepbot.core.clock import ManualClock
from prepbot.core.commands import Period, ScheduleChange
from prepbot.core.events import Invocation, Place, ReplyDeleted, ReplyEdited, ThreadReply
from prepbot.core.schedule import parse_weekdays
from prepbot.core.views import LeaderboardView, MemberRef, StreakView
from prepbot.services.answers import AnswerStatus
from prepbot.store.models import Answer, Round, Subscription
from tests.fakes import RecordingPlatform

MONDAY = date(2026, 11, 30)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(datetime(2026, 11, 30, 9, 1, tzinfo=UTC))


def place(channel: str = "C1", community: str = "T1") -> Place:
    return Place("fake", community, channel, "Acme", channel.lower())


async def subscribe(app: App, where: Place, **change: object) -> Subscription:
    change.setdefault("weekdays", parse_weekdays("daily"))
    return await app.services.admin.subscribe(where, ScheduleChange(**change))  # type: ignore[arg-type]


def reply(thread: str, message: str, who: str, text: str = "my answer", channel: str = "C1"):
    return ThreadReply(
        place(channel), thread, message, MemberRef(who, who.title()), text, datetime.now(UTC)
    )


async def test_a_round_is_posted_once_per_day_even_when_asked_twice_at_once(
    app: App, platform: RecordingPlatform
):
    subscription = await subscribe(app, place())
    rounds = app.services.rounds
    outcomes = await asyncio.gather(*(rounds.post_round(subscription.id, MONDAY) for _ in range(5)))
    assert len(platform.questions) == 1
    assert sum(o is not None and o.posted_now for o in outcomes) == 1
    again = await rounds.post_round(subscription.id, MONDAY)
    assert again is not None
    assert not again.posted_now
    assert len(platform.questions) == 1


async def test_a_round_is_revealed_exactly_once(app: App, platform: RecordingPlatform):
    subscription = await subscribe(app, place())
    outcome = await app.services.rounds.post_round(subscription.id, MONDAY)
    assert outcome is not None
    cards = await asyncio.gather(
        *(app.services.rounds.reveal_round(outcome.round.id) for _ in range(4))
    )
    assert sum(card is not None for card in cards) == 1
    assert len(platform.reveals) == 1
    assert platform.reveals[0][1] == "q1"  # in the question's thread


async def test_rotation_uses_every_scenario_before_repeating(app: App, platform: RecordingPlatform):
    subscription = await subscribe(app, place())
    total = len(app.services.rounds.eligible(subscription))  # hiring-side scenarios left out
    for offset in range(total + 3):
        await app.services.rounds.post_round(subscription.id, MONDAY + timedelta(days=offset))
    ids = [card.scenario_id for _, card in platform.questions]
    assert len(set(ids[:total])) == total
    assert ids[total:] != ids[:3] or total < 3  # a new cycle, reshuffled


async def test_topic_filters_limit_the_rotation(app: App, platform: RecordingPlatform):
    topics = {"llm-serving", "calibration"}
    subscription = await subscribe(app, place(), topics=tuple(sorted(topics)))
    matching = {s.id for s in app.services.ctx.catalog.scenarios if topics & set(s.topics)}
    for offset in range(len(matching)):
        await app.services.rounds.post_round(subscription.id, MONDAY + timedelta(days=offset))
    ids = [card.scenario_id for _, card in platform.questions]
    assert sorted(ids) == sorted(matching)  # each matching scenario once, nothing else


async def test_replayed_edited_and_deleted_replies(app: App, platform: RecordingPlatform):
    subscription = await subscribe(app, place())
    await app.services.rounds.post_round(subscription.id, MONDAY)
    answers = app.services.answers
    first = reply("q1", "m1", "alice", "part one")
    assert (await answers.record(first)).status is AnswerStatus.RECORDED
    assert (await answers.record(first)).status is AnswerStatus.DUPLICATE
    await answers.record(reply("q1", "m2", "alice", "part two"))
    edit = ReplyEdited(
        place(), "q1", "m1", MemberRef("alice", "Alice"), "part one, edited", datetime.now(UTC)
    )
    assert (await answers.edit(edit)).status is AnswerStatus.EDITED
    async with app.db.transaction() as session:
        answer = await session.scalar(select(Answer))
        assert answer is not None
        assert answer.text == "part one, edited\n\npart two"
        assert answer.on_time
    gone = ReplyDeleted(place(), "q1", "m2", datetime.now(UTC))
    assert (await answers.withdraw(gone)).status is AnswerStatus.EDITED
    gone = ReplyDeleted(place(), "q1", "m1", datetime.now(UTC))
    assert (await answers.withdraw(gone)).status is AnswerStatus.WITHDRAWN
    async with app.db.transaction() as session:
        assert await session.scalar(select(func.count()).select_from(Answer)) == 0


async def test_an_edit_of_a_reply_never_seen_records_it(app: App, platform: RecordingPlatform):
    subscription = await subscribe(app, place())
    await app.services.rounds.post_round(subscription.id, MONDAY)
    edit = ReplyEdited(
        place(), "q1", "m9", MemberRef("bob", "Bob"), "typed while down", datetime.now(UTC)
    )
    assert (await app.services.answers.edit(edit)).status is AnswerStatus.RECORDED


async def test_an_on_time_answer_survives_deletion_after_the_reveal(
    app: App, platform: RecordingPlatform
):
    subscription = await subscribe(app, place())
    outcome = await app.services.rounds.post_round(subscription.id, MONDAY)
    assert outcome is not None
    await app.services.answers.record(reply("q1", "m1", "alice"))
    await app.services.rounds.reveal_round(outcome.round.id)
    late = reply("q1", "m2", "bob", "after the reveal")
    assert (await app.services.answers.record(late)).status is AnswerStatus.LATE
    deleted = ReplyDeleted(place(), "q1", "m1", datetime.now(UTC))
    await app.services.answers.withdraw(deleted)
    removed = await app.services.answers.withdraw(
        ReplyDeleted(place(), "q1", "m2", datetime.now(UTC))
    )
    assert removed.status is AnswerStatus.REMOVED
    streak = await app.services.queries.streak(subscription, MemberRef("alice", "Alice"))
    assert isinstance(streak, StreakView)
    assert (streak.current, streak.on_time) == (1, 1)


async def test_streaks_count_rounds_not_days_and_reach_milestones(
    app: App, platform: RecordingPlatform
):
    subscription = await subscribe(app, place(), weekdays=parse_weekdays("mon,wed,fri"))
    rounds, answers = app.services.rounds, app.services.answers
    days = [MONDAY + timedelta(days=d) for d in (0, 2, 4, 7)]  # a weekend in between
    for number, day in enumerate(days, start=1):
        outcome = await rounds.post_round(subscription.id, day)
        assert outcome is not None
        await answers.record(reply(f"q{number}", f"m{number}", "alice"))
        cards = await rounds.reveal_open(subscription.id)
    streak = await app.services.queries.streak(subscription, "alice")
    assert isinstance(streak, StreakView)
    assert (streak.current, streak.best, streak.on_time) == (4, 4, 4)
    milestones = [m for _, _, card in platform.reveals for m in card.milestones]
    assert [(m.member.name, m.streak) for m in milestones] == [("Alice", 3)]
    assert cards[0].on_time == (MemberRef("alice", "Alice"),)


async def test_leaderboards_by_period_and_community(
    app: App, platform: RecordingPlatform, clock: ManualClock
):
    general = await subscribe(app, place("C1"))
    other = await subscribe(app, place("C2"))
    rounds, answers = app.services.rounds, app.services.answers
    # Last month: bob answers in C1. This week: alice in C1 twice, carol in C2 once.
    previous = date(2026, 10, 30)
    for day, who, channel, sub in [
        (previous, "bob", "C1", general),
        (MONDAY, "alice", "C1", general),
        (MONDAY + timedelta(days=1), "alice", "C1", general),
        (MONDAY, "carol", "C2", other),
    ]:
        outcome = await rounds.post_round(sub.id, day)
        assert outcome is not None
        thread = outcome.round.question_message_id
        assert thread is not None
        await answers.record(reply(thread, f"{who}-{day}", who, channel=channel))
        await rounds.reveal_open(sub.id)
    queries = app.services.queries
    today = MONDAY + timedelta(days=1)

    def names(board: LeaderboardView) -> list[tuple[str, int, int]]:
        return [(r.member.name, r.on_time, r.streak) for r in board.rows]

    week = await queries.leaderboard([general], "#c1", Period.WEEK, today)
    assert names(week) == [("Alice", 2, 2)]
    everything = await queries.leaderboard([general], "#c1", Period.ALL, today)
    assert names(everything) == [("Alice", 2, 2), ("Bob", 1, 0)]
    community = await queries.leaderboard([general, other], "all", Period.ALL, today)
    assert names(community) == [("Alice", 2, 2), ("Carol", 1, 1), ("Bob", 1, 0)]


async def test_a_channel_that_is_gone_pauses_only_its_own_study_group(
    app: App, platform: RecordingPlatform
):
    gone = await subscribe(app, place("C-gone"))
    fine = await subscribe(app, place("C-fine"))
    platform.gone["C-gone"] = "channel_not_found: the channel was deleted or archived"
    assert await app.services.rounds.post_round(gone.id, MONDAY) is None
    posted = await app.services.rounds.post_round(fine.id, MONDAY)
    assert posted is not None
    assert posted.posted_now
    async with app.db.transaction() as session:
        paused = await session.get(Subscription, gone.id)
        assert paused is not None
        assert paused.paused
        assert paused.paused_reason == platform.gone["C-gone"]
        assert (
            await session.scalar(
                select(func.count()).select_from(Round).where(Round.subscription_id == gone.id)
            )
            == 0
        )
    help_text = await app.services.commands.handle(
        Invocation(place("C-gone"), MemberRef("admin", "Admin"), True, "help")
    )
    assert "channel_not_found" in help_text.views[0].subscription  # type: ignore[union-attr,operator]


async def test_only_admins_run_admin_commands(app: App, platform: RecordingPlatform):
    member = MemberRef("u1", "Una")
    response = await app.services.commands.handle(
        Invocation(place(), member, is_admin=False, text="subscribe 09:00")
    )
    assert response.private
    assert "Only admins" in response.views[0].text  # type: ignore[union-attr]
    async with app.db.transaction() as session:
        assert await session.scalar(select(func.count()).select_from(Subscription)) == 0


async def test_a_replayed_reply_or_edit_after_its_deletion_changes_nothing(
    app: App, platform: RecordingPlatform
):
    subscription = await subscribe(app, place())
    await app.services.rounds.post_round(subscription.id, MONDAY)
    answers = app.services.answers
    original = reply("q1", "m1", "carol", "first thought")
    await answers.record(original)
    await answers.withdraw(ReplyDeleted(place(), "q1", "m1", datetime.now(UTC)))
    # A resumed session or a retry delivers the creation and an edit again, after the delete.
    assert (await answers.record(original)).status is AnswerStatus.DUPLICATE
    late_edit = ReplyEdited(
        place(), "q1", "m1", MemberRef("carol", "Carol"), "edited", datetime.now(UTC)
    )
    assert (await answers.edit(late_edit)).status is AnswerStatus.DUPLICATE
    async with app.db.transaction() as session:
        assert await session.scalar(select(func.count()).select_from(Answer)) == 0


async def test_a_round_with_thousands_of_answers_is_revealed_with_every_streak(
    app: App, platform: RecordingPlatform
):
    from sqlalchemy import text

    subscription = await subscribe(app, place())
    outcome = await app.services.rounds.post_round(subscription.id, MONDAY)
    assert outcome is not None
    members = 7_000  # 5 parameters each would pass asyncpg's limit of 32,767 in one statement
    series = (
        f"WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < {members}) "
        if app.db.is_sqlite
        else ""
    )
    source = "c" if app.db.is_sqlite else f"generate_series(1, {members}) AS n"
    async with app.db.transaction() as session:
        await session.execute(
            text(
                series + "INSERT INTO members (community_id, external_id, display_name) "
                f"SELECT :community, 'U' || n, 'member ' || n FROM {source}"
            ),
            {"community": subscription.community_id},
        )
        await session.execute(
            text(
                "INSERT INTO answers (round_id, member_id, on_time, text, first_reply_at, "
                "updated_at) SELECT :round, id, :yes, 'answer', :at, :at FROM members"
            ),
            {
                "round": outcome.round.id,
                "yes": True,
                "at": datetime(2026, 11, 30, 10, tzinfo=None if app.db.is_sqlite else UTC),
            },
        )
    card = await app.services.rounds.reveal_round(outcome.round.id)
    assert card is not None
    assert len(card.on_time) == members
    streak = await app.services.queries.streak(subscription, "U6999")
    assert isinstance(streak, StreakView)
    assert (streak.current, streak.on_time) == (1, 1)


async def test_the_leaderboard_cut_breaks_ties_by_streak_then_late_then_name(app: App):
    """40 members, many tied at the 20th place: the top 20 are exactly the ranking rule's."""
    import random

    from sqlalchemy import insert

    from prepbot.services import tallies
    from prepbot.store.models import Member, MemberStats

    subscription = await subscribe(app, place())
    chance = random.Random(8)
    now = datetime.now(UTC)
    people = {  # id -> (display name, on-time answers, late answers, current streak)
        f"U{n:02d}": (
            chance.choice("bcdefg") + f"name{n:02d}",
            chance.randint(0, 2),
            n % 2,
            chance.randint(0, 1),
        )
        for n in range(40)
    }
    async with app.db.transaction() as session:
        round_ids = [
            await session.scalar(
                insert(Round)
                .values(
                    subscription_id=subscription.id,
                    local_date=MONDAY - timedelta(days=n),
                    scenario_id="x",
                    cycle=0,
                    status="revealed",
                    question_message_id=f"q{n}",
                    claimed_at=now,
                    reveal_due_at=now,
                )
                .returning(Round.id)
            )
            for n in range(1, 5)
        ]
        for external, (name, on_time, late, streak) in people.items():
            member = await session.scalar(
                insert(Member)
                .values(
                    community_id=subscription.community_id, external_id=external, display_name=name
                )
                .returning(Member.id)
            )
            for index, round_id in enumerate(round_ids[: on_time + late]):
                session.add(
                    Answer(
                        round_id=round_id,
                        member_id=member,
                        on_time=index < on_time,
                        text="a",
                        first_reply_at=now,
                        updated_at=now,
                    )
                )
            session.add(
                MemberStats(
                    subscription_id=subscription.id,
                    member_id=member,
                    on_time=on_time,
                    current_streak=streak,
                    best_streak=streak,
                )
            )
    async with app.db.transaction() as session:  # rows written directly: count them up
        await tallies.recount(session, app.db.dialect)
    board = await app.services.queries.leaderboard([subscription], "#c1", Period.ALL, MONDAY)
    expected = sorted(
        (-on_time, -streak, -late, name.lower(), name)
        for name, on_time, late, streak in people.values()
        if on_time + late > 0
    )[:20]
    assert [row.member.name for row in board.rows] == [key[-1] for key in expected]
    assert [(row.on_time, row.streak) for row in board.rows] == [(-k[0], -k[1]) for k in expected]


async def test_an_answer_stored_while_the_round_is_revealed_is_in_the_reveal_or_late(
    app: App, platform: RecordingPlatform, monkeypatch: pytest.MonkeyPatch
):
    """The reveal lands between reading the round and storing the answer: never both missed."""
    from prepbot.services.answers import AnswerService

    subscription = await subscribe(app, place())
    outcome = await app.services.rounds.post_round(subscription.id, MONDAY)
    assert outcome is not None
    thread = outcome.round.question_message_id
    assert thread is not None
    round_read = asyncio.Event()
    found_round = AnswerService._threads_of

    async def slow(self: AnswerService, *args: object, **kwargs: object) -> object:
        found = await found_round(self, *args, **kwargs)  # type: ignore[arg-type]
        round_read.set()
        await asyncio.sleep(0.5)  # the reveal runs now
        return found

    monkeypatch.setattr(AnswerService, "_threads_of", slow)
    answering = asyncio.create_task(app.services.answers.record(reply(thread, "m1", "alice")))
    await round_read.wait()
    cards = await app.services.rounds.reveal_open(subscription.id)
    answered = await answering
    async with app.db.transaction() as session:
        on_time = await session.scalar(select(Answer.on_time))
    credited = [m.id for card in cards for m in card.on_time]
    assert (on_time, credited) in [(True, ["alice"]), (False, [])], answered


async def round_alice_answered(app: App) -> tuple[Round, str]:
    """Post today's round in C1 and store alice's answer; return the round and its thread."""
    subscription = await subscribe(app, place())
    outcome = await app.services.rounds.post_round(subscription.id, MONDAY)
    assert outcome is not None
    assert outcome.round.question_message_id is not None
    thread = outcome.round.question_message_id
    first = await app.services.answers.record(reply(thread, "m1", "alice"))
    assert first.status == AnswerStatus.RECORDED
    return outcome.round, thread


async def test_an_answer_is_stored_again_when_postgresql_breaks_a_deadlock_with_it(
    app: App, platform: RecordingPlatform
):
    """Batches (or replicas) locking the same rows in turn: the one rolled back is stored again."""
    from dataclasses import replace

    from prepbot.store.models import Member

    if app.db.is_sqlite:
        pytest.skip("SQLite transactions take turns: they cannot deadlock")
    open_round, thread = await round_alice_answered(app)
    # Her answer's grading (in the background) locks her member row too: let it finish first.
    await app.services.rounds.feedback.settle()
    async with app.db.transaction() as session:
        member_id = await session.scalar(select(Member.id))
    renamed = replace(
        reply(thread, "m2", "alice", "ring all-reduce"), member=MemberRef("alice", "Al")
    )
    async with app.db.engine.connect() as other:
        await other.execute(
            text("SELECT 1 FROM members WHERE id = :m FOR UPDATE"), {"m": member_id}
        )
        storing = asyncio.create_task(app.services.answers.record(renamed))
        # The batch share-locks the round, then waits to rename alice, whom we hold.
        for _ in range(100):
            async with app.db.engine.connect() as watcher:
                waiting = await watcher.scalar(
                    text(
                        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                        "AND datname = current_database()"
                    )
                )
            if waiting:
                break
            await asyncio.sleep(0.05)
        assert waiting, "the batch never waited for the member we hold"
        # Now we wait for the round it holds: a deadlock, which PostgreSQL breaks by rolling
        # the batch back (it has waited longest).
        await other.execute(
            text("UPDATE rounds SET status = status WHERE id = :r"), {"r": open_round.id}
        )
        await other.rollback()
    second = await storing
    assert second.status == AnswerStatus.RECORDED
    async with app.db.transaction() as session:
        stored = (
            await session.execute(
                select(Member.display_name, Answer.text).join(Answer, Answer.member_id == Member.id)
            )
        ).all()
    assert stored == [("Al", "my answer\n\nring all-reduce")]


async def test_an_answer_is_stored_after_the_database_dropped_the_writers_connection(
    app: App, platform: RecordingPlatform
):
    """The answer writer does not ping before a batch: a dropped connection is replaced."""
    if app.db.is_sqlite:
        pytest.skip("an embedded SQLite database has no server to drop a connection")
    _, thread = await round_alice_answered(app)
    # The server ends every other session of this database, as a restart or failover does.
    async with app.db.engine.connect() as connection:
        ended = await connection.scalar(
            text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        )
    assert ended
    second = await app.services.answers.record(reply(thread, "m2", "bob", "ring all-reduce"))
    assert second.status == AnswerStatus.RECORDED
    async with app.db.transaction() as session:
        texts = sorted((await session.scalars(select(Answer.text))).all())
    assert texts == ["my answer", "ring all-reduce"]


async def test_an_answer_is_stored_when_the_writers_connection_drops_in_the_middle_of_a_batch(
    app: App, platform: RecordingPlatform, monkeypatch: pytest.MonkeyPatch
):
    """A failover between a batch's statements: nothing half-stored, the batch stored again."""
    if app.db.is_sqlite:
        pytest.skip("an embedded SQLite database has no server to drop a connection")
    from prepbot.services.answers import AnswerService
    from prepbot.store.db import WRITER_POOL, driver_connection

    _, thread = await round_alice_answered(app)
    await app.services.rounds.feedback.settle()
    known_answers = AnswerService._known_answers
    dropped: list[int] = []

    async def drop_first(
        self: AnswerService, session: AsyncSession, keys: list[tuple[int, int]]
    ) -> list[tuple[int, int, int, bool]]:
        """End this batch's own server session once, after its first statements."""
        if not dropped:
            pid = await (await driver_connection(session)).fetchval("SELECT pg_backend_pid()")
            async with app.db.engine.connect() as other:
                await other.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid})
            dropped.append(pid)
        return await known_answers(self, session, keys)

    monkeypatch.setattr(AnswerService, "_known_answers", drop_first)
    second = await app.services.answers.record(reply(thread, "m2", "bob", "ring all-reduce"))
    assert dropped
    assert second.status == AnswerStatus.RECORDED
    for n in range(WRITER_POOL + 1):  # each in turn: the pool let the dead connection go
        more = await app.services.answers.record(reply(thread, f"m{n + 3}", "bob", f"+{n}"))
        assert more.status == AnswerStatus.RECORDED
    async with app.db.transaction() as session:
        texts = sorted((await session.scalars(select(Answer.text))).all())
        replies = await session.scalar(text("SELECT count(*) FROM replies"))
    assert texts == ["my answer", "ring all-reduce\n\n+0\n\n+1\n\n+2\n\n+3"]
    assert replies == 2 + WRITER_POOL + 1


async def test_a_reveal_is_not_starved_by_a_thread_that_never_stops_answering(
    app: App, platform: RecordingPlatform
):
    """Batches share-lock the round one after another; the reveal still gets its turn, soon."""
    if app.db.is_sqlite:
        pytest.skip("SQLite transactions take turns in one process: none waits on a row lock")
    subscription = await subscribe(app, place())
    outcome = await app.services.rounds.post_round(subscription.id, MONDAY)
    assert outcome is not None
    assert outcome.round.question_message_id is not None
    thread = outcome.round.question_message_id
    stop = asyncio.Event()
    acknowledged: dict[str, AnswerStatus] = {}

    async def member(n: int) -> None:
        """Reply again and again, as one of many members of a very busy thread."""
        turn = 0
        while not stop.is_set():
            message = f"m{n}-{turn}"
            stored = await app.services.answers.record(reply(thread, message, f"u{n}", message))
            acknowledged[message] = stored.status
            turn += 1

    members = [asyncio.create_task(member(n)) for n in range(48)]
    await asyncio.sleep(0.5)  # batches overlapping without a gap by now
    started = asyncio.get_running_loop().time()
    cards = await asyncio.wait_for(app.services.rounds.reveal_open(subscription.id), 60)
    waited = asyncio.get_running_loop().time() - started
    newcomer = await app.services.answers.record(reply(thread, "new", "newcomer", "late"))
    stop.set()
    await asyncio.gather(*members)
    print(f"the reveal waited {waited:.2f} s; {len(acknowledged)} replies stored meanwhile")
    assert len(cards) == 1
    assert waited < 10, f"the reveal waited {waited:.1f} s for a gap between batches"
    assert newcomer.status == AnswerStatus.LATE
    async with app.db.transaction() as session:
        stored = await session.scalar(text("SELECT count(*) FROM replies"))
    assert stored == len(acknowledged) + 1  # every acknowledged reply is there, once
