"""The team's data, out: export row for row, a backup taken while answers arrive, the audit log."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from prepbot.app import App, build_app
from prepbot.core.clock import ManualClock
from prepbot.core.commands import Period
from prepbot.core.events import Invocation, Place, ThreadReply
from prepbot.core.views import MemberRef
from prepbot.export import ExportFilter, _plain, export_tables
from prepbot.settings import Settings
from prepbot.store.db import BackupError, Database, backup_sqlite
from prepbot.store.models import (
    Answer,
    AnswerGrade,
    AuditEntry,
    Member,
    MemberStats,
    Round,
    Subscription,
)
from tests.fakes import RecordingPlatform

START = date(2026, 11, 2)  # a Monday
GROUPS = (Place("fake", "T1", "C-ML", "Acme", "ml"), Place("fake", "T1", "C-SYS", "Acme", "sys"))
MEMBERS = ("ada", "bob", "cy", "dee")
TABLES = {
    "groups": Subscription,
    "rounds": Round,
    "answers": Answer,
    "members": Member,
    "streaks": MemberStats,
    "feedback": AnswerGrade,
    "audit": AuditEntry,
}


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(datetime(2026, 11, 1, 12, 0, tzinfo=UTC))


def admin(where: Place, text: str, *, is_admin: bool = True) -> Invocation:
    return Invocation(where, MemberRef("root", "Root"), is_admin, text)


async def simulate_month(app: App, clock: ManualClock) -> None:
    """Two study groups, 30 days of rounds, members answering on most days, some late."""
    commands = app.services.commands
    for where in GROUPS:
        await commands.handle(admin(where, "subscribe 09:00 UTC daily reveal=17:00"))
    await commands.handle(admin(GROUPS[0], "schedule answers=private"))
    await commands.handle(admin(GROUPS[1], "pause", is_admin=False))  # refused, and audited
    subscriptions = [await app.services.admin.subscription(where) for where in GROUPS]
    for offset in range(30):
        day = START + timedelta(days=offset)
        clock.set(datetime.combine(day, datetime.min.time(), UTC) + timedelta(hours=9))
        for where, subscription in zip(GROUPS, subscriptions, strict=True):
            assert subscription is not None
            posted = await app.services.rounds.post_round(subscription.id, day)
            assert posted is not None
            thread = posted.round.question_message_id
            assert thread is not None
            for number, who in enumerate(MEMBERS):
                if (offset + number) % 3 == 0:
                    continue  # everyone misses some days
                clock.advance(timedelta(minutes=5))
                await app.services.answers.record(
                    ThreadReply(
                        where,
                        thread,
                        f"{thread}-{who}",
                        MemberRef(who, who.title()),
                        f"{who} on {day}: calibration, then temperature scaling.",
                        clock.now(),
                    )
                )
            await app.services.rounds.reveal_round(posted.round.id)
            if offset % 7 == 0:  # a late answer after the reveal
                await app.services.answers.record(
                    ThreadReply(
                        where,
                        thread,
                        f"{thread}-late",
                        MemberRef("eve", "Eve"),
                        "Late, but here.",
                        clock.now(),
                    )
                )
    await app.services.rounds.feedback.close()


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


async def database_rows(db: Database, model: Any) -> list[dict[str, Any]]:
    columns = [c.key for c in model.__table__.columns]
    keys = [getattr(model, c.key) for c in model.__table__.primary_key.columns]
    async with db.transaction() as session:
        rows = (await session.scalars(select(model).order_by(*keys))).all()
    return [{c: _plain(getattr(row, c)) for c in columns} for row in rows]


async def test_an_export_of_a_simulated_month_matches_the_database_row_for_row(
    app: App, platform: RecordingPlatform, clock: ManualClock, tmp_path: Path
):
    await simulate_month(app, clock)
    written = await export_tables(app.db, tmp_path / "all", ExportFilter())
    for name, model in TABLES.items():
        exported = read_jsonl(tmp_path / "all" / f"{name}.jsonl")
        assert exported == await database_rows(app.db, model), name
        assert written[name] == len(exported)
    assert written["rounds"] == 60
    assert written["answers"] > 100
    assert written["feedback"] > 100
    assert written["audit"] == 4  # 2 subscribes, 1 schedule, 1 refused pause
    csv_lines = (tmp_path / "all" / "answers.csv").read_text(encoding="utf-8").splitlines()
    assert len(csv_lines) == written["answers"] + 1  # a header, then one line per answer
    again = await export_tables(app.db, tmp_path / "again", ExportFilter())
    assert again == written
    for name in TABLES:  # the same data exports to the same bytes
        first = (tmp_path / "all" / f"{name}.jsonl").read_bytes()
        assert first == (tmp_path / "again" / f"{name}.jsonl").read_bytes()


async def test_an_export_for_one_group_and_a_week_holds_only_that(
    app: App, platform: RecordingPlatform, clock: ManualClock, tmp_path: Path
):
    await simulate_month(app, clock)
    week = ExportFilter("C-SYS", date(2026, 11, 9), date(2026, 11, 15))
    await export_tables(app.db, tmp_path, week)
    groups = read_jsonl(tmp_path / "groups.jsonl")
    assert [g["channel_id"] for g in groups] == ["C-SYS"]
    rounds = read_jsonl(tmp_path / "rounds.jsonl")
    assert sorted(r["local_date"] for r in rounds) == [
        (date(2026, 11, 9) + timedelta(days=n)).isoformat() for n in range(7)
    ]
    assert {r["subscription_id"] for r in rounds} == {groups[0]["id"]}
    round_ids = {r["id"] for r in rounds}
    every_answer = await database_rows(app.db, Answer)
    assert read_jsonl(tmp_path / "answers.jsonl") == [
        a for a in every_answer if a["round_id"] in round_ids
    ]
    assert {f["round_id"] for f in read_jsonl(tmp_path / "feedback.jsonl")} <= round_ids
    audit = read_jsonl(tmp_path / "audit.jsonl")
    assert audit == []  # the group's admin commands were on 1 November, before the week


async def test_every_admin_command_is_audited_with_who_what_and_its_outcome(
    app: App, platform: RecordingPlatform
):
    where = GROUPS[0]
    commands = app.services.commands
    await commands.handle(admin(where, "subscribe 09:00 UTC daily"))
    await commands.handle(admin(where, "schedule 25:00"))  # a usage error
    await commands.handle(admin(where, "pause", is_admin=False))  # not an admin
    await commands.handle(admin(where, "today"))  # a member command: not audited
    await commands.handle(admin(where, "pause"))
    async with app.db.transaction() as session:
        rows = (await session.scalars(select(AuditEntry).order_by(AuditEntry.id))).all()
    assert [(r.command, r.outcome, r.member_id, r.channel_id) for r in rows] == [
        ("subscribe 09:00 UTC daily", "done", "root", "C-ML"),
        ("schedule 25:00", "refused", "root", "C-ML"),
        ("pause", "refused", "root", "C-ML"),
        ("pause", "done", "root", "C-ML"),
    ]


async def test_a_backup_taken_while_answers_arrive_restores_to_an_identical_leaderboard(
    tmp_path: Path, clock: ManualClock
):
    url = f"sqlite:///{tmp_path / 'prepbot.db'}"
    app = await build_app(Settings.model_validate({"database": {"url": url}}), clock)
    app.services.ctx.platforms["fake"] = RecordingPlatform()
    try:
        await simulate_month(app, clock)
        subscription = await app.services.admin.subscription(GROUPS[1])
        assert subscription is not None
        day = START + timedelta(days=30)
        posted = await app.services.rounds.post_round(subscription.id, day)
        assert posted is not None
        thread = posted.round.question_message_id
        assert thread is not None
        stop = asyncio.Event()

        async def members_answering() -> int:
            sent = 0
            while not stop.is_set():
                who = f"m{sent}"
                await app.services.answers.record(
                    ThreadReply(
                        GROUPS[1],
                        thread,
                        f"x{sent}",
                        MemberRef(who, who),
                        "An answer.",
                        clock.now(),
                    )
                )
                sent += 1
            return sent

        writer = asyncio.create_task(members_answering())
        await asyncio.sleep(0.3)
        await asyncio.to_thread(backup_sqlite, url, tmp_path / "backup.db")
        await asyncio.sleep(0.1)
        stop.set()
        sent = await writer

        async def board(db_app: App) -> Any:
            group = await db_app.services.admin.subscription(GROUPS[1])
            assert group is not None
            return await db_app.services.queries.leaderboard([group], "#sys", Period.ALL, day)

        restored = await build_app(
            Settings.model_validate({"database": {"url": f"sqlite:///{tmp_path / 'backup.db'}"}}),
            clock,
        )
        try:
            assert await board(restored) == await board(app)
            kept = await database_rows(restored.db, Answer)
            source = {a["id"]: a for a in await database_rows(app.db, Answer)}
            assert all(source[a["id"]] == a for a in kept)  # a consistent prefix of the source
            during = [a for a in kept if a["round_id"] == posted.round.id]
            assert 0 < len(during) < sent  # taken mid-stream, not before or after it
        finally:
            await restored.close()
    finally:
        await app.close()


def test_a_backup_refuses_postgresql_an_existing_file_and_a_missing_database(tmp_path: Path):
    with pytest.raises(BackupError, match="pg_dump"):
        backup_sqlite("postgresql+asyncpg://u:secret@db/prep", tmp_path / "b.db")
    with pytest.raises(BackupError, match="no database file"):
        backup_sqlite(f"sqlite:///{tmp_path / 'none.db'}", tmp_path / "b.db")
    (tmp_path / "taken.db").write_text("x")
    (tmp_path / "real.db").write_text("")
    with pytest.raises(BackupError, match="exists already"):
        backup_sqlite(f"sqlite:///{tmp_path / 'real.db'}", tmp_path / "taken.db")


def test_the_export_and_db_commands_say_what_is_wrong_in_one_line(tmp_path: Path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREPBOT_")}
    env["PREPBOT_DATABASE__URL"] = f"sqlite:///{tmp_path / 'prepbot.db'}"

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["prepbot", *args], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120
        )

    assert run("db", "upgrade").returncode == 0
    current = run("db", "current")
    assert "(the newest)" in current.stdout
    assert run("db", "history").stdout.splitlines()[0].startswith("0013")
    bad_date = run("export", "out", "--since", "2026-13-01")
    assert bad_date.returncode == 2
    assert bad_date.stderr == "error: --since takes a date like 2026-11-30, not '2026-13-01'\n"
    unknown = run("export", "out", "--group", "C-NONE")
    assert unknown.returncode == 2
    assert "no study group has channel id 'C-NONE'" in unknown.stderr
    backup = run("db", "backup", "copy.db")
    assert backup.returncode == 0, backup.stderr
    assert (tmp_path / "copy.db").stat().st_size > 0


def said(response: Any) -> str:
    (view,) = response.views
    return str(view.text)


async def every_value(db: Database) -> list[tuple[str, Any]]:
    """Return (table, value) for every column value of every table."""
    from prepbot.store.models import Base

    found = []
    async with db.transaction() as session:
        for table in Base.metadata.sorted_tables:
            for row in (await session.execute(select(table))).all():
                found += [(table.name, value) for value in row]
    return found


async def test_forget_me_erases_a_member_everywhere_and_the_leaderboard_follows(
    app: App, platform: RecordingPlatform, clock: ManualClock, tmp_path: Path
):
    await simulate_month(app, clock)
    where = GROUPS[1]
    group = await app.services.admin.subscription(where)
    assert group is not None
    today = START + timedelta(days=30)
    before = await app.services.queries.leaderboard([group], "#sys", Period.ALL, today)
    assert "ada" in {row.member.id for row in before.rows}
    ada = Invocation(where, MemberRef("ada", "Ada"), False, "forget-me")
    preview = said(await app.services.commands.handle(ada))
    assert "This erases 40 answers by you in 2 study groups" in preview
    assert "/prep forget-me confirm" in preview
    assert any(value == "ada" for _, value in await every_value(app.db))  # nothing gone yet
    confirm = Invocation(where, MemberRef("ada", "Ada"), False, "forget-me confirm")
    assert "Erased: 40 answers by you" in said(await app.services.commands.handle(confirm))

    leftovers = [
        (table, value)
        for table, value in await every_value(app.db)
        if isinstance(value, str) and (value in {"ada", "Ada"} or "ada on 2026" in value)
    ]
    assert leftovers == []
    await export_tables(app.db, tmp_path / "export", ExportFilter())
    for file in (tmp_path / "export").iterdir():
        text = file.read_text(encoding="utf-8")
        for trace in ('"ada"', '"Ada"', "ada on 2026"):
            assert trace not in text, file
    after = await app.services.queries.leaderboard([group], "#sys", Period.ALL, today)
    kept = [(r.member.id, r.on_time, r.late, r.points, r.streak) for r in before.rows]
    assert [k for k in kept if k[0] != "ada"] == [
        (r.member.id, r.on_time, r.late, r.points, r.streak) for r in after.rows
    ]
    # An old reply of hers, replayed by the platform, does not bring her back.
    async with app.db.transaction() as session:
        some_round = await session.scalar(  # a day she answered (she skipped every third)
            select(Round).where(
                Round.subscription_id == group.id, Round.local_date == START + timedelta(days=1)
            )
        )
    assert some_round is not None
    assert some_round.question_message_id is not None
    replayed = await app.services.answers.record(
        ThreadReply(
            where,
            some_round.question_message_id,
            f"{some_round.question_message_id}-ada",
            MemberRef("ada", "Ada"),
            "ada on 2026: replayed",
            clock.now(),
        )
    )
    assert replayed.status.value == "duplicate"
    assert not [v for _, v in await every_value(app.db) if v == "ada"]


async def test_only_an_admin_erases_another_member_and_the_audit_log_keeps_no_name(
    app: App, platform: RecordingPlatform, clock: ManualClock
):
    await simulate_month(app, clock)
    where = GROUPS[0]
    commands = app.services.commands
    refused = await commands.handle(
        Invocation(where, MemberRef("bob", "Bob"), False, "forget-me <@cy> confirm")
    )
    assert "Only admins" in said(refused)
    preview = said(await commands.handle(admin(where, "forget-me <@cy>")))
    assert "that member (cy)" in preview
    assert "/prep forget-me <@cy> confirm" in preview
    assert "Erased" in said(await commands.handle(admin(where, "forget-me <@cy> confirm")))
    async with app.db.transaction() as session:
        audit = (await session.scalars(select(AuditEntry).order_by(AuditEntry.id))).all()
        assert await session.scalar(select(Member).where(Member.external_id == "cy")) is None
    assert [a.command for a in audit[-2:]] == ["forget-me @…", "forget-me @… confirm"]
    nothing = said(await commands.handle(admin(where, "forget-me <@cy>")))
    assert "holds nothing about that member" in nothing


async def test_answer_text_past_the_retention_period_is_emptied_and_the_counts_stay(
    app: App, platform: RecordingPlatform, clock: ManualClock
):
    await simulate_month(app, clock)
    group = await app.services.admin.subscription(GROUPS[1])
    assert group is not None
    today = START + timedelta(days=30)
    board = await app.services.queries.leaderboard([group], "#sys", Period.ALL, today)
    emptied = await app.services.privacy.drop_old_answer_text(timedelta(days=7), clock.now())
    assert emptied > 100
    answers = await database_rows(app.db, Answer)
    async with app.db.transaction() as session:
        revealed = {r.id: r.revealed_at for r in (await session.scalars(select(Round))).all()}
    cutoff = clock.now() - timedelta(days=7)
    for answer in answers:
        when = revealed[answer["round_id"]]
        old = when is not None and when < cutoff
        assert (answer["text"] == "") == old, answer
    assert await app.services.queries.leaderboard([group], "#sys", Period.ALL, today) == board
    assert await app.services.privacy.drop_old_answer_text(timedelta(days=7), clock.now()) == 0
