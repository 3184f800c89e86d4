"""Start-up failures end in one clear line: a second process, a busy port, a read-only file,
a database server that never answers; and no command prints the database password."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from tests.slack_fake import FakeSlack
from tests.test_operations import SLACK_APP, SLACK_BOT, clean_env
from tests.test_operations import run as prepbot

PASSWORD = "s3cretpw"


def error_lines(stderr: str) -> list[str]:
    assert "Traceback" not in stderr, stderr
    return [line for line in stderr.splitlines() if line.startswith("error: ")]


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack(bot_token=SLACK_BOT, app_token=SLACK_APP) as fake:
        yield fake


def slack_env(slack: FakeSlack, url: str, **extra: str) -> dict[str, str]:
    return clean_env(
        PREPBOT_DATABASE__URL=url,
        PREPBOT_SLACK__BOT_TOKEN=SLACK_BOT,
        PREPBOT_SLACK__APP_TOKEN=SLACK_APP,
        PREPBOT_SLACK__API_URL=slack.api_url,
        **extra,
    )


async def test_a_second_bot_on_one_sqlite_file_stops_before_it_connects(
    slack: FakeSlack, tmp_path: Path
):
    env = slack_env(slack, f"sqlite:///{tmp_path / 'prepbot.db'}", PREPBOT_HTTP__ENABLED="false")
    first = await asyncio.create_subprocess_exec(
        "prepbot",
        "run",
        env=env,
        cwd=tmp_path,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        await slack.wait_for_socket(timeout=60)
        second = await asyncio.to_thread(prepbot, env, tmp_path, "run")
        assert first.returncode is None  # the first one runs on
    finally:
        first.terminate()
        await asyncio.wait_for(first.wait(), timeout=60)
    assert second.returncode == 2
    (line,) = error_lines(second.stderr)
    assert line.startswith(f"error: another prepbot (pid {first.pid}) is already running on")
    assert len(slack.calls_to("apps.connections.open")) == 1  # the second never connected


async def test_a_busy_health_port_is_one_line_naming_the_setting(slack: FakeSlack, tmp_path: Path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = slack_env(slack, f"sqlite:///{tmp_path / 'prepbot.db'}", PREPBOT_HTTP__PORT=str(port))
        done = await asyncio.to_thread(prepbot, env, tmp_path, "run")
    assert done.returncode == 2
    (line,) = error_lines(done.stderr)
    assert line.startswith(
        f"error: setting http.port (PREPBOT_HTTP__PORT): 127.0.0.1:{port} is already in use"
    )


@contextlib.contextmanager
def read_only(path: Path) -> Iterator[None]:
    """Make a file unwritable, even for root (who ignores permission bits)."""
    if os.geteuid() != 0:
        path.chmod(0o444)
        yield
        return
    if subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode != 0:
        pytest.skip("running as root and the file system cannot make a file immutable")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)


def test_a_read_only_database_file_is_one_line(tmp_path: Path):
    database = tmp_path / "prepbot.db"
    url = f"sqlite:///{database}"
    env = clean_env(PREPBOT_DATABASE__URL=url)
    assert prepbot(env, tmp_path, "db", "upgrade").returncode == 0
    with read_only(database):
        done = prepbot(env, tmp_path, "run", stdin="my answer\n")
    assert done.returncode == 2
    assert error_lines(done.stderr) == [
        f"error: setting database.url (PREPBOT_DATABASE__URL): cannot use {url}: "
        "attempt to write a readonly database"
    ]


@pytest.fixture
def silent_server() -> Iterator[int]:
    """Listen on a port, accept every connection and never say a word; yield the port."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    accepted: list[socket.socket] = []

    def accept() -> None:
        with contextlib.suppress(OSError):
            while True:
                accepted.append(server.accept()[0])

    threading.Thread(target=accept, daemon=True).start()
    yield server.getsockname()[1]
    server.close()
    for connection in accepted:
        connection.close()


@pytest.mark.parametrize("command", [["run"], ["db", "upgrade"]])
def test_a_database_server_that_never_answers_is_one_line(
    silent_server: int, tmp_path: Path, command: list[str]
):
    url = f"postgresql://postgres:{PASSWORD}@127.0.0.1:{silent_server}/prepbot"
    done = prepbot(clean_env(PREPBOT_DATABASE__URL=url), tmp_path, *command)
    assert done.returncode == 2
    assert error_lines(done.stderr) == [
        "error: setting database.url (PREPBOT_DATABASE__URL): cannot use "
        f"postgresql://postgres:***@127.0.0.1:{silent_server}/prepbot: "
        "no answer within 10 seconds"
    ]
    assert PASSWORD not in done.stdout + done.stderr


def test_db_upgrade_hides_the_database_password(postgres_url: str, tmp_path: Path):
    # The test server trusts local connections, so any password is accepted.
    url = make_url(postgres_url).set(password=PASSWORD).render_as_string(hide_password=False)
    done = prepbot(clean_env(PREPBOT_DATABASE__URL=url), tmp_path, "db", "upgrade")
    assert done.returncode == 0, done.stderr
    assert PASSWORD not in done.stdout + done.stderr
    shown = make_url(url).render_as_string(hide_password=True)
    assert done.stdout == f"database {shown} is at revision 0013\n"


def test_db_upgrade_of_an_unreachable_server_hides_the_password(tmp_path: Path):
    url = f"postgresql://postgres:{PASSWORD}@127.0.0.1:1/prepbot"
    done = prepbot(clean_env(PREPBOT_DATABASE__URL=url), tmp_path, "db", "upgrade")
    assert done.returncode == 2
    (line,) = error_lines(done.stderr)
    assert line.startswith(
        "error: setting database.url (PREPBOT_DATABASE__URL): cannot use "
        "postgresql://postgres:***@127.0.0.1:1/prepbot: "
    )
    assert PASSWORD not in done.stdout + done.stderr


def test_serving_freezes_the_start_up_heap_and_gives_the_interpreter_back_after():
    """Long-lived start-up objects leave the collector's walks; stopping undoes it all."""
    import gc
    import sys

    from prepbot.app import GIL_SWITCH_SECONDS, prepare_to_serve

    before = sys.getswitchinterval()
    assert gc.get_freeze_count() == 0
    restore = prepare_to_serve()
    try:
        assert gc.get_freeze_count() > 0
        assert sys.getswitchinterval() == GIL_SWITCH_SECONDS
    finally:
        restore()
    assert gc.get_freeze_count() == 0
    assert sys.getswitchinterval() == before
