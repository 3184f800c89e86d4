"""Alembic environment: runs prepbot's migrations on a connection the app hands over.

``prepbot db upgrade`` and the app pass their own connection in ``config.attributes``; the
``alembic`` command line (for writing new migrations) uses ``sqlalchemy.url`` instead.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine
from sqlalchemy.engine import Connection

from prepbot.store.models import Base

target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = context.config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:
    url = context.config.get_main_option("sqlalchemy.url")
    if not url:
        raise SystemExit("set sqlalchemy.url (a sync URL) to run migrations from the command line")
    with create_engine(url).connect() as sync_connection:
        _run(sync_connection)
        sync_connection.commit()
