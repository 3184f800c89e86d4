"""Database tables: communities, subscriptions, rounds, members, answers, replies, statistics.

SQLAlchemy 2 declarative models shared by SQLite and PostgreSQL. The schema itself is created
only by the Alembic migrations in ``store/migrations``; a test checks the two agree. Imports no
chat platform.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every database (SQLite keeps no zone of its own)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        """Store a timezone-aware value as UTC; refuse a naive one."""
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored; give a timezone-aware one")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Return stored values as timezone-aware UTC."""
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    """Base of every table, with predictable constraint names for migrations."""

    metadata = MetaData(naming_convention=NAMING)


class RoundStatus:
    """The life of a round: claimed, then posted, then revealed."""

    CLAIMED = "claimed"
    POSTED = "posted"
    REVEALED = "revealed"


class Community(Base):
    """A Slack workspace, a Discord server, or the console."""

    __tablename__ = "communities"
    __table_args__ = (UniqueConstraint("platform", "external_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    platform: Mapped[str] = mapped_column(String(20))
    external_id: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200), default="")


class Subscription(Base):
    """A channel that receives questions: a study group."""

    __tablename__ = "subscriptions"
    __table_args__ = (UniqueConstraint("community_id", "channel_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    community_id: Mapped[int] = mapped_column(ForeignKey("communities.id", ondelete="CASCADE"))
    channel_id: Mapped[str] = mapped_column(String(64))
    channel_name: Mapped[str] = mapped_column(String(200), default="")
    post_at: Mapped[str] = mapped_column(String(5))
    timezone: Mapped[str] = mapped_column(String(64))
    weekdays: Mapped[str] = mapped_column(String(13))
    reveal_at: Mapped[str | None] = mapped_column(String(5), nullable=True)
    reveal_after_minutes: Mapped[int | None] = mapped_column(Integer, nullable=True)
    topics: Mapped[list[str]] = mapped_column(JSON, default=list)
    difficulties: Mapped[list[str]] = mapped_column(JSON, default=list)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    paused: Mapped[bool] = mapped_column(Boolean, default=False)
    paused_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    paused_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    seed: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    answer_mode: Mapped[str] = mapped_column(String(10), default="thread", server_default="thread")
    """``thread`` (replies in the question's thread) or ``private`` (hidden until the reveal)."""
    archive_token: Mapped[str | None] = mapped_column(String(64), nullable=True, unique=True)
    """The secret in the group's web archive link (None until ``/prep archive`` first runs)."""
    digest: Mapped[str] = mapped_column(String(16), default="auto", server_default="auto")
    """When the weekly digest goes out: ``auto``, ``off`` or a day and time like ``fri-17:00``."""


class Round(Base):
    """One question posted to one subscription on one local date."""

    __tablename__ = "rounds"
    __table_args__ = (
        UniqueConstraint("subscription_id", "local_date"),
        Index("ix_rounds_subscription_status", "subscription_id", "status"),
        Index("ix_rounds_question_message", "subscription_id", "question_message_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    subscription_id: Mapped[int] = mapped_column(ForeignKey("subscriptions.id", ondelete="CASCADE"))
    local_date: Mapped[date] = mapped_column(Date)
    scenario_id: Mapped[str] = mapped_column(String(80))
    cycle: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[str] = mapped_column(String(10), default=RoundStatus.CLAIMED)
    question_message_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    claimed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    posted_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    reveal_due_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revealed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    reveal_message_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # The process posting the question or sending the reveal right now, and until when it
    # vouches for it: only a round whose lease ran out is another process's to repair.
    claimed_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # Set on the one round per cycle whose post warned that the rotation is running out:
    # how many unused scenarios were left after it.
    rotation_left: Mapped[int | None] = mapped_column(Integer, nullable=True)


class RoundThread(Base):
    """A thread the bot posted for a round: a reply in any of them is that round's answer."""

    __tablename__ = "round_threads"
    __table_args__ = (Index("ix_round_threads_round_id", "round_id"),)

    subscription_id: Mapped[int] = mapped_column(
        ForeignKey("subscriptions.id", ondelete="CASCADE"), primary_key=True
    )
    message_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    round_id: Mapped[int] = mapped_column(ForeignKey("rounds.id", ondelete="CASCADE"))


class HeldReply(Base):
    """A reply in a thread the bot is still posting; it joins its round when the thread is known."""

    __tablename__ = "held_replies"

    subscription_id: Mapped[int] = mapped_column(
        ForeignKey("subscriptions.id", ondelete="CASCADE"), primary_key=True
    )
    thread_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    message_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    member_external_id: Mapped[str] = mapped_column(String(64))
    member_name: Mapped[str] = mapped_column(String(200))
    text: Mapped[str] = mapped_column(Text)
    posted_at: Mapped[datetime] = mapped_column(UTCDateTime)
    edited: Mapped[bool] = mapped_column(Boolean, default=False)


class Member(Base):
    """A person in a community, as the platform identifies them."""

    __tablename__ = "members"
    __table_args__ = (UniqueConstraint("community_id", "external_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    community_id: Mapped[int] = mapped_column(ForeignKey("communities.id", ondelete="CASCADE"))
    external_id: Mapped[str] = mapped_column(String(64))
    display_name: Mapped[str] = mapped_column(String(200))


class Answer(Base):
    """A member's replies in one round's thread, joined; on time or late."""

    __tablename__ = "answers"
    __table_args__ = (
        UniqueConstraint("round_id", "member_id"),
        Index("ix_answers_member", "member_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    round_id: Mapped[int] = mapped_column(ForeignKey("rounds.id", ondelete="CASCADE"))
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id", ondelete="CASCADE"))
    on_time: Mapped[bool] = mapped_column(Boolean)
    text: Mapped[str] = mapped_column(Text, default="")
    first_reply_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    points: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    """Key points the grader credited (a copy of its grade's, so leaderboards need no join)."""


PRIVATE_REPLY = "private:"
"""The message id prefix of a private answer's reply: ``private:`` + the submission's id."""


class Reply(Base):
    """One platform message that is part of an answer; its id maps edits and deletes back.

    A private answer is a reply too, whose id is ``PRIVATE_REPLY`` + its submission's id.
    """

    __tablename__ = "replies"
    __table_args__ = (
        UniqueConstraint("round_id", "message_id"),
        Index("ix_replies_answer_id", "answer_id"),  # an answer's text is joined from these
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    round_id: Mapped[int] = mapped_column(ForeignKey("rounds.id", ondelete="CASCADE"))
    answer_id: Mapped[int] = mapped_column(ForeignKey("answers.id", ondelete="CASCADE"))
    message_id: Mapped[str] = mapped_column(String(64))
    text: Mapped[str] = mapped_column(Text)
    posted_at: Mapped[datetime] = mapped_column(UTCDateTime)
    edited_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class AnswerGrade(Base):
    """What an on-time answer covered of its scenario's rubric, graded once at the reveal.

    ``feedback`` says what became of the member's private feedback: ``pending`` until it is
    tried, then ``sent``, ``closed`` (the platform would not deliver it, e.g. DMs closed),
    ``off`` (the member turned it off) or ``failed``. A delivery is claimed before it is
    tried, so nobody gets it twice; ``/prep feedback`` shows it again whatever became of it.
    """

    __tablename__ = "answer_grades"
    __table_args__ = (
        Index("ix_answer_grades_round_id", "round_id"),
        Index("ix_answer_grades_subscription_member", "subscription_id", "member_id"),
    )

    answer_id: Mapped[int] = mapped_column(
        ForeignKey("answers.id", ondelete="CASCADE"), primary_key=True
    )
    round_id: Mapped[int] = mapped_column(ForeignKey("rounds.id", ondelete="CASCADE"))
    subscription_id: Mapped[int] = mapped_column(ForeignKey("subscriptions.id", ondelete="CASCADE"))
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id", ondelete="CASCADE"))
    covered: Mapped[list[str]] = mapped_column(JSON, default=list)
    missed: Mapped[list[str]] = mapped_column(JSON, default=list)
    red_flags: Mapped[list[str]] = mapped_column(JSON, default=list)
    points: Mapped[int] = mapped_column(Integer, default=0)
    stuffed: Mapped[bool] = mapped_column(Boolean, default=False)
    graded_by: Mapped[str] = mapped_column(String(20))
    graded_at: Mapped[datetime] = mapped_column(UTCDateTime)
    text_hash: Mapped[str] = mapped_column(String(16), default="")
    """A digest of the answer text graded: a grade whose text changed since is graded again."""
    feedback: Mapped[str] = mapped_column(String(10), default="pending")


class MemberPreference(Base):
    """A member's choices that outlive a round, such as not wanting feedback messages."""

    __tablename__ = "member_preferences"

    member_id: Mapped[int] = mapped_column(
        ForeignKey("members.id", ondelete="CASCADE"), primary_key=True
    )
    feedback_messages: Mapped[bool] = mapped_column(Boolean, default=True)


class DeletedReply(Base):
    """A reply deleted on the platform: a replayed creation or edit of it must not bring it back."""

    __tablename__ = "deleted_replies"

    round_id: Mapped[int] = mapped_column(
        ForeignKey("rounds.id", ondelete="CASCADE"), primary_key=True
    )
    message_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    deleted_at: Mapped[datetime] = mapped_column(UTCDateTime)


class MemberStats(Base):
    """A member's running totals in one study group, updated at each reveal."""

    __tablename__ = "member_stats"

    subscription_id: Mapped[int] = mapped_column(
        ForeignKey("subscriptions.id", ondelete="CASCADE"), primary_key=True
    )
    member_id: Mapped[int] = mapped_column(
        ForeignKey("members.id", ondelete="CASCADE"), primary_key=True
    )
    on_time: Mapped[int] = mapped_column(Integer, default=0)
    current_streak: Mapped[int] = mapped_column(Integer, default=0)
    best_streak: Mapped[int] = mapped_column(Integer, default=0)


class Digest(Base):
    """A study group's weekly digest: claimed before it is posted, its message id after.

    One row per group and week (``period_end``, the week's last local date), so a digest is
    posted once however many processes tick. ``lease_until`` works as a round's does: only a
    claim whose lease ran out without a message id is another process's to repair.
    """

    __tablename__ = "digests"
    __table_args__ = (UniqueConstraint("subscription_id", "period_end"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    subscription_id: Mapped[int] = mapped_column(ForeignKey("subscriptions.id", ondelete="CASCADE"))
    period_start: Mapped[date] = mapped_column(Date)
    period_end: Mapped[date] = mapped_column(Date)
    claimed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    claimed_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    posted_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    message_id: Mapped[str | None] = mapped_column(String(64), nullable=True)


class MemberTally(Base):
    """A member's answers and key points in one study group over one period, for leaderboards.

    ``period`` is ``week``, ``month`` or ``all``; ``period_start`` its first local date (the
    Monday, the 1st, or 2000-01-01 for all time). Counts only rounds already revealed; kept
    in step by ``services.tallies`` in the transactions that change them.
    """

    __tablename__ = "member_tallies"
    __table_args__ = (
        Index(
            "ix_member_tallies_rank",
            "subscription_id",
            "period",
            "period_start",
            "on_time",
            "points",
        ),
    )

    subscription_id: Mapped[int] = mapped_column(
        ForeignKey("subscriptions.id", ondelete="CASCADE"), primary_key=True
    )
    period: Mapped[str] = mapped_column(String(5), primary_key=True)
    period_start: Mapped[date] = mapped_column(Date, primary_key=True)
    member_id: Mapped[int] = mapped_column(
        ForeignKey("members.id", ondelete="CASCADE"), primary_key=True
    )
    on_time: Mapped[int] = mapped_column(Integer, default=0)
    late: Mapped[int] = mapped_column(Integer, default=0)
    points: Mapped[int] = mapped_column(Integer, default=0)


class BotState(Base):
    """Small named values the bot keeps between runs, such as the console's date."""

    __tablename__ = "bot_state"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class AuditEntry(Base):
    """One admin command: who ran it where and when, and whether it was done or refused.

    ``outcome`` is ``done``, ``refused`` (not an admin, or a usage error) or ``failed``.
    """

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_at", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    platform: Mapped[str] = mapped_column(String(20))
    community_id: Mapped[str] = mapped_column(String(64))
    channel_id: Mapped[str] = mapped_column(String(64))
    member_id: Mapped[str] = mapped_column(String(64))
    member_name: Mapped[str] = mapped_column(String(200))
    command: Mapped[str] = mapped_column(Text)
    outcome: Mapped[str] = mapped_column(String(10))
