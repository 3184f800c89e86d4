"""Throw-away PostgreSQL databases for benchmarks, made on the server of an admin URL.

Each is created for one run and dropped after it. Imports nothing of prepbot.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

ADMIN_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


@asynccontextmanager
async def throwaway_postgres(admin_url: str = ADMIN_URL) -> AsyncIterator[str]:
    """Create a database named prepbot_bench_<random> and yield its URL; drop it afterwards."""
    import asyncpg
    from sqlalchemy.engine import make_url

    name = f"prepbot_bench_{secrets.token_hex(4)}"
    plain = make_url(admin_url).set(drivername="postgresql")
    admin = plain.render_as_string(hide_password=False)
    connection = await asyncpg.connect(admin)
    try:
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()
    try:
        yield plain.set(database=name).render_as_string(hide_password=False)
    finally:
        connection = await asyncpg.connect(admin)
        try:
            await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await connection.close()
