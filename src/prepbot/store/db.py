"""The database: async engine and sessions for SQLite or PostgreSQL, and schema upgrades.

SQLite (aiosqlite) is the embedded default; PostgreSQL (asyncpg) is chosen by URL. The schema
comes only from the Alembic migrations shipped in ``store/migrations``. Imports no chat
platform.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
CONNECT_TIMEOUT_SECONDS = 10
"""How long a PostgreSQL connection may take to open before prepbot gives up on the server."""
DEADLOCK_DETECTED = "40P01"  # PostgreSQL's SQLSTATE for a transaction it rolled back
WRITER_POOL = 3
"""PostgreSQL connections kept for the answer writer: one per batch it stores at once."""


def async_url(url: str) -> str:
    """Give a plain database URL the async driver prepbot uses (aiosqlite or asyncpg)."""
    parsed = make_url(url)
    driver = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+asyncpg"}
    if parsed.drivername in driver:
        parsed = parsed.set(drivername=driver[parsed.drivername])
    elif parsed.drivername == "postgres":
        parsed = parsed.set(drivername="postgresql+asyncpg")
    if parsed.drivername not in driver.values():
        raise ValueError(
            f"unsupported database '{parsed.drivername}': use sqlite:///FILE or postgresql://…"
        )
    return parsed.render_as_string(hide_password=False)


class Database:
    """One database: an engine, a session factory and the schema's upgrade."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = async_url(url)
        options: dict[str, Any] = {"echo": echo}
        if self.is_sqlite:
            options["connect_args"] = {"timeout": 30}
        else:
            options.update(
                pool_size=10,
                max_overflow=10,
                pool_pre_ping=True,
                connect_args={"timeout": CONNECT_TIMEOUT_SECONDS},
            )
        self.engine: AsyncEngine = create_async_engine(self.url, **options)
        if self.is_sqlite:
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        self.writer_engine = self.engine  # the answer writer's: no ping before each batch
        if not self.is_sqlite:
            options.update(pool_size=WRITER_POOL, max_overflow=0, pool_pre_ping=False)
            self.writer_engine = create_async_engine(self.url, **options)
        self._writer_sessions = async_sessionmaker(self.writer_engine, expire_on_commit=False)
        self._turns: tuple[asyncio.AbstractEventLoop, asyncio.Lock] | None = None

    @property
    def is_sqlite(self) -> bool:
        """Say whether this is the embedded SQLite database."""
        return self.url.startswith("sqlite")

    @property
    def dialect(self) -> str:
        """Return 'sqlite' or 'postgresql'."""
        return "sqlite" if self.is_sqlite else "postgresql"

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """Open a session in a transaction that commits on success and rolls back on error."""
        async with self.sessions() as session, session.begin():
            yield session

    @asynccontextmanager
    async def deciding(self) -> AsyncIterator[AsyncSession]:
        """Open a transaction whose reads still hold when it writes (answers, reveals).

        PostgreSQL callers lock the rows they read. SQLite's driver begins a transaction only
        at its first write, after the reads, so there such transactions take turns in this
        process, the only one SQLite allows (prepbot refuses a second): an asyncio lock,
        which costs no statement.
        """
        if not self.is_sqlite:
            async with self.transaction() as session:
                yield session
            return
        loop = asyncio.get_running_loop()
        if self._turns is None or self._turns[0] is not loop:
            self._turns = (loop, asyncio.Lock())
        async with self._turns[1], self.transaction() as session:
            yield session

    @asynccontextmanager
    async def writing(self) -> AsyncIterator[AsyncSession]:
        """Open a ``deciding`` transaction for the answer writer's hot path.

        On PostgreSQL it comes from a pool of its own that skips ``pool_pre_ping``, the
        ``SELECT 1`` round trip before each checkout (about a tenth of a small batch's time).
        A connection the server dropped then fails at the batch's first statement, with
        ``connection_invalidated`` set on the error; the pool is invalidated with it, and the
        caller stores the batch again (see ``is_dropped_connection``).
        """
        if self.is_sqlite:
            async with self.deciding() as session:
                yield session
            return
        async with self._writer_sessions() as session, session.begin():
            yield session

    async def upgrade(self, revision: str = "head") -> None:
        """Bring the schema up to ``revision`` with the shipped Alembic migrations."""
        async with self.engine.begin() as connection:
            await connection.run_sync(_run_upgrade, revision)
            # A read-only file or replica would fail at the first answer; fail at start instead.
            await connection.execute(
                text("UPDATE alembic_version SET version_num = version_num WHERE 1 = 0")
            )

    async def current_revision(self) -> str | None:
        """Return the schema's Alembic revision, or None for an empty database."""
        from alembic.runtime.migration import MigrationContext

        async with self.engine.connect() as connection:
            return await connection.run_sync(
                lambda sync: MigrationContext.configure(sync).get_current_revision()
            )

    async def close(self) -> None:
        """Close every pooled connection."""
        await self.engine.dispose()
        if self.writer_engine is not self.engine:
            await self.writer_engine.dispose()


async def driver_connection(session: AsyncSession, *, lone_read: bool = False) -> Any:
    """Return the asyncpg connection under a PostgreSQL session, inside its open transaction.

    For the answer writer's hot path, whose few statements take arrays and skip SQLAlchemy's
    per-statement work. The session must have run a statement already: SQLAlchemy begins its
    transaction at the first one, and a statement sent before would commit on its own; only
    a ``lone_read`` (one SELECT, the session's only statement) may go without.
    Errors come back as asyncpg's own (see ``is_dropped_connection`` and ``is_deadlock``).
    """
    connection = await session.connection()
    driver = (await connection.get_raw_connection()).driver_connection
    if driver is None or not (lone_read or driver.is_in_transaction()):
        raise RuntimeError("the session has not begun its transaction on the server yet")
    return driver


def is_dropped_connection(error: BaseException) -> bool:
    """Say whether ``error`` is a connection the database dropped (safe to run again)."""
    if isinstance(error, DBAPIError):
        return bool(error.connection_invalidated)
    # Raised by asyncpg itself, on the writer's hot path (``driver_connection``).
    from asyncpg.exceptions import ConnectionDoesNotExistError, InterfaceError

    closed = isinstance(error, InterfaceError) and "closed" in str(error)
    return closed or isinstance(error, ConnectionDoesNotExistError | ConnectionError)


def is_deadlock(error: BaseException) -> bool:
    """Say whether PostgreSQL rolled ``error``'s transaction back to break a deadlock."""
    original = getattr(error, "orig", error)  # SQLAlchemy's wrapper, or asyncpg's own error
    return getattr(original, "sqlstate", None) == DEADLOCK_DETECTED


class BackupError(Exception):
    """A backup that cannot be taken, with what to do instead."""


def backup_sqlite(url: str, target: Path) -> None:
    """Copy an SQLite database to ``target`` with SQLite's online backup API.

    Safe while the bot runs and answers arrive: the copy is one consistent snapshot (a single
    backup step under a read transaction), written to a temporary file and renamed into place
    only when complete. PostgreSQL has its own tool (``pg_dump``); this refuses it.
    """
    import sqlite3

    parsed = make_url(url)
    if not parsed.drivername.startswith("sqlite"):
        raise BackupError(
            "this database is PostgreSQL: back it up with its own tool, e.g. "
            f"pg_dump --format=custom --file={target} "
            f"'{parsed.set(drivername='postgresql').render_as_string(hide_password=True)}'"
        )
    if not parsed.database or parsed.database == ":memory:":
        raise BackupError("an in-memory SQLite database has nothing on disk to back up")
    source_path = Path(parsed.database)
    if not source_path.is_file():
        raise BackupError(f"there is no database file at {source_path}")
    if target.exists():
        raise BackupError(f"{target} exists already; choose a new path")
    partial = target.with_name(target.name + ".partial")
    source = sqlite3.connect(f"file:{source_path}?mode=ro", uri=True, timeout=30)
    try:
        copy = sqlite3.connect(partial)
        try:
            source.backup(copy)
        finally:
            copy.close()
    finally:
        source.close()
    partial.replace(target)


def revision_history() -> list[tuple[str, str | None, str]]:
    """Return the shipped migrations, newest first: (revision, the one before it, its title)."""
    from alembic.script import ScriptDirectory

    scripts = ScriptDirectory.from_config(alembic_config())
    return [
        (s.revision, s.down_revision if isinstance(s.down_revision, str) else None, s.doc or "")
        for s in scripts.walk_revisions()
    ]


def alembic_config(connection: Connection | None = None) -> Any:
    """Return an Alembic config for the shipped migrations, optionally bound to a connection."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def _run_upgrade(connection: Connection, revision: str) -> None:
    from alembic import command

    command.upgrade(alembic_config(connection), revision)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    """Turn on foreign keys, write-ahead logging and a generous lock wait for SQLite."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()
