"""The team's data, out: study groups, rounds, answers, members, streaks, feedback, audit log.

``prepbot export`` writes one JSON Lines file per table (every column, one row per line, as
stored) and a CSV beside the tables people open in a spreadsheet (answers, members, streaks),
optionally only for one channel's study group and for rounds between two dates. Rows come out
in primary-key order, so two exports of the same data are byte-identical. Reads the database
only; imports no chat platform.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any

from sqlalchemy import ColumnElement, Select, select, true

from prepbot.store.db import Database
from prepbot.store.models import (
    Answer,
    AnswerGrade,
    AuditEntry,
    Member,
    MemberStats,
    Round,
    Subscription,
    UTCDateTime,
)

SPREADSHEET_TABLES = ("answers", "members", "streaks")


@dataclass(frozen=True)
class ExportFilter:
    """Which study groups and rounds to export; None means no limit."""

    channel_id: str | None = None
    since: date | None = None
    until: date | None = None


def _plain(value: Any) -> Any:
    """Return a value JSON and CSV can hold: dates and times in ISO 8601, UTC."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return value


def _window(column: Any, chosen: ExportFilter) -> ColumnElement[bool]:
    """Return the condition that keeps ``column`` (a date or a UTC time) within the dates."""
    condition: ColumnElement[bool] = true()
    is_time = isinstance(column.type, UTCDateTime)
    if chosen.since is not None:
        start = datetime.combine(chosen.since, time(), UTC) if is_time else chosen.since
        condition = condition & (column >= start)
    if chosen.until is not None:
        if is_time:
            end = datetime.combine(chosen.until, time.max, UTC)
            condition = condition & (column <= end)
        else:
            condition = condition & (column <= chosen.until)
    return condition


def queries(chosen: ExportFilter) -> dict[str, Select[Any]]:
    """Return, per exported table, the query for its rows under ``chosen``."""
    groups = select(Subscription.id)
    if chosen.channel_id is not None:
        groups = groups.where(Subscription.channel_id == chosen.channel_id)
    rounds = select(Round.id).where(
        Round.subscription_id.in_(groups), _window(Round.local_date, chosen)
    )
    answered = select(Answer.member_id).where(Answer.round_id.in_(rounds))
    counted = select(MemberStats.member_id).where(MemberStats.subscription_id.in_(groups))
    audit = select(AuditEntry).where(_window(AuditEntry.at, chosen))
    if chosen.channel_id is not None:
        audit = audit.where(AuditEntry.channel_id == chosen.channel_id)
    return {
        "groups": select(Subscription).where(Subscription.id.in_(groups)).order_by(Subscription.id),
        "rounds": select(Round).where(Round.id.in_(rounds)).order_by(Round.id),
        "answers": select(Answer).where(Answer.round_id.in_(rounds)).order_by(Answer.id),
        "members": select(Member)
        .where(Member.id.in_(answered) | Member.id.in_(counted))
        .order_by(Member.id),
        "streaks": select(MemberStats)
        .where(MemberStats.subscription_id.in_(groups))
        .order_by(MemberStats.subscription_id, MemberStats.member_id),
        "feedback": select(AnswerGrade)
        .where(AnswerGrade.round_id.in_(rounds))
        .order_by(AnswerGrade.answer_id),
        "audit": audit.order_by(AuditEntry.id),
    }


async def export_tables(db: Database, folder: Path, chosen: ExportFilter) -> dict[str, int]:
    """Write every table's rows under ``chosen`` into ``folder``; return the rows per table."""
    folder.mkdir(parents=True, exist_ok=True)
    written: dict[str, int] = {}
    async with db.transaction() as session:  # one snapshot on PostgreSQL's default isolation
        for name, query in queries(chosen).items():
            model = query.column_descriptions[0]["entity"]
            columns = [c.key for c in model.__table__.columns]
            rows = [
                {c: _plain(getattr(row, c)) for c in columns}
                for row in (await session.scalars(query)).all()
            ]
            _write_jsonl(folder / f"{name}.jsonl", rows)
            if name in SPREADSHEET_TABLES:
                _write_csv(folder / f"{name}.csv", columns, rows)
            written[name] = len(rows)
    return written


def _write_jsonl(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    with path.open("w", encoding="utf-8") as out:
        for row in rows:
            out.write(json.dumps(row, ensure_ascii=False, sort_keys=False) + "\n")


def _write_csv(path: Path, columns: list[str], rows: Sequence[dict[str, Any]]) -> None:
    with path.open("w", encoding="utf-8", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow(
                {k: json.dumps(v) if isinstance(v, list | dict) else v for k, v in row.items()}
            )
