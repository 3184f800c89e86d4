"""Who schedules: one process at a time.

On PostgreSQL, replicas compete for a session-level advisory lock held on a dedicated
connection; when the leader dies its connection closes, the lock frees, and a standby that
retries takes over. On SQLite one process is the rule: an exclusive lock on a file beside the
database refuses a second one with a clear message. Imports no chat platform library.
"""

from __future__ import annotations

import fcntl
import logging
import os
from pathlib import Path
from typing import IO, Any, Protocol

from sqlalchemy.engine import make_url

log = logging.getLogger(__name__)

ADVISORY_KEY = 0x70726570626F74  # "prepbot" in ASCII, as one bigint


class AlreadyRunning(Exception):
    """Another prepbot process already uses this embedded database."""


class Leadership(Protocol):
    """A lock that at most one process holds."""

    async def acquire(self) -> bool:
        """Try once to become the leader; return whether this process leads."""
        ...

    async def still_leading(self) -> bool:
        """Check that the lead is still held (the connection may have died)."""
        ...

    async def release(self) -> None:
        """Give up the lead."""
        ...

    def describe(self) -> str:
        """Say what the lock is, for the logs."""
        ...


class PostgresLeadership:
    """A PostgreSQL advisory lock on a connection of its own."""

    def __init__(self, url: str, key: int = ADVISORY_KEY) -> None:
        self.dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        self.key = key
        self._connection: Any = None

    async def acquire(self) -> bool:
        """Try the advisory lock without waiting."""
        import asyncpg

        try:
            if self._connection is None:
                self._connection = await asyncpg.connect(self.dsn, timeout=10)
            got = await self._connection.fetchval("SELECT pg_try_advisory_lock($1)", self.key)
        except (OSError, asyncpg.PostgresError) as error:
            log.warning("cannot reach PostgreSQL for the scheduling lock: %s", error)
            await self._drop()
            return False
        return bool(got)

    async def still_leading(self) -> bool:
        """Check the lock's connection is alive and still holds the lock."""
        import asyncpg

        if self._connection is None:
            return False
        try:
            # A session-level advisory lock lasts as long as its connection.
            held = await self._connection.fetchval("SELECT 1", timeout=10)
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
            await self._drop()
            return False
        return bool(held)

    async def release(self) -> None:
        """Unlock and close the lock's connection."""
        await self._drop()

    async def _drop(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            try:
                await connection.close(timeout=5)
            except Exception:  # a dead connection may fail to close; it is gone either way
                connection.terminate()

    def describe(self) -> str:
        """Name the lock."""
        return f"PostgreSQL advisory lock {self.key}"


class SqliteSingleProcess:
    """An exclusive lock on '<database>.lock'; a second process is refused."""

    def __init__(self, database_file: Path) -> None:
        self.path = database_file.with_name(database_file.name + ".lock")
        self._handle: IO[str] | None = None

    async def acquire(self) -> bool:
        """Take the lock, or raise AlreadyRunning naming the process that holds it."""
        if self._handle is not None:
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = self.path.open("a+", encoding="utf-8")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise AlreadyRunning(
                f"another prepbot (pid {holder}) is already running on "
                f"{self.path.with_suffix('')}. The embedded SQLite database allows one process; "
                "stop the other one, or use PostgreSQL (PREPBOT_DATABASE__URL) to run replicas."
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        self._handle = handle
        return True

    async def still_leading(self) -> bool:
        """Report the file lock as held; it cannot be lost while the process lives."""
        return self._handle is not None

    async def release(self) -> None:
        """Unlock the file."""
        if self._handle is not None:
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None

    def describe(self) -> str:
        """Name the lock."""
        return f"lock file {self.path}"


def leadership_for(url: str) -> Leadership:
    """Return the leadership that suits a database URL."""
    parsed = make_url(url)
    if parsed.drivername.startswith("sqlite"):
        return SqliteSingleProcess(Path(parsed.database or "prepbot.db").resolve())
    return PostgresLeadership(url)
