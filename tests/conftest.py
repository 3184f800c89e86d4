"""Shared fixtures: the repository's paths, the seed file and a factory for content packs."""

from __future__ import annotations

import asyncio
import copy
import os
import secrets
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
BUILTIN_PACK = REPO / "content"
SEED = REPO.parent / "shared" / "seeds" / "000_92348d59ce22f500.txt"
POSTGRES_ENV = "TEST_POSTGRES_URL"
TABLES = (
    "member_tallies, digests, answer_grades, member_preferences, held_replies, round_threads, "
    "deleted_replies, replies, answers, member_stats, rounds, "
    "members, subscriptions, "
    "communities, bot_state, audit_log"
)

VALID_SCENARIO: dict[str, Any] = {
    "id": "sample-scenario",
    "title": "A sample scenario",
    "kind": "technical",
    "topics": ["calibration"],
    "difficulty": "medium",
    "context": {"company": "Acme", "role": "ML engineer", "situation": "An interviewer asks."},
    "prompts": ["Which model do you choose?"],
    "trap": {"answer": "The confident one.", "why_it_falls_short": "Confidence is not accuracy."},
    "insights": ["Calibration is measured with ECE.", "Temperature scaling fixes it cheaply."],
    "follow_ups": ["How do you compute ECE?"],
    "rubric": {
        "key_points": [
            {"id": "ece", "point": "Measures calibration with ECE.", "look_for": ["ECE"]},
            {
                "id": "reliability",
                "point": "Plots a reliability diagram.",
                "look_for": ["reliability"],
            },
            {
                "id": "temperature",
                "point": "Fixes it with temperature scaling.",
                "look_for": ["temperature scaling"],
            },
        ]
    },
    "source": {
        "author": "Jane Doe",
        "handle": "janedoe",
        "url": "https://example.com/post/1",
    },
}


def scenario_data(**changes: Any) -> dict[str, Any]:
    """Return a valid scenario mapping with some fields replaced (None removes a field)."""
    data = copy.deepcopy(VALID_SCENARIO)
    for key, value in changes.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    return data


@pytest.fixture
def isolated_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Run from an empty folder with none of this machine's PREPBOT_* settings."""
    for name in list(os.environ):
        if name.startswith("PREPBOT_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def seed_file() -> Path:
    if not SEED.is_file():
        pytest.skip(f"the seed file is not beside this checkout ({SEED})")
    return SEED


PackFactory = Callable[[dict[str, Any]], Path]


@pytest.fixture
def make_pack(tmp_path: Path) -> PackFactory:
    """Write a pack folder from {relative path: mapping or raw text}; return its path."""
    counter = iter(range(1000))

    def make(files: dict[str, Any]) -> Path:
        root = tmp_path / f"pack{next(counter)}"
        for relative, content in files.items():
            path = root / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            text = content if isinstance(content, str) else yaml.safe_dump(content)
            path.write_text(text, encoding="utf-8")
        root.mkdir(exist_ok=True)
        return root

    return make


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """Create a throw-away database on the PostgreSQL server named by $TEST_POSTGRES_URL.

    Without the variable the PostgreSQL half of the suite is skipped (CI always sets it);
    with it, an unreachable server fails the tests.
    """
    admin_url = os.environ.get(POSTGRES_ENV)
    if not admin_url:
        pytest.skip(f"set {POSTGRES_ENV} to run the store tests on PostgreSQL too")
    import asyncpg
    from sqlalchemy.engine import make_url

    name = f"prepbot_test_{secrets.token_hex(4)}"
    admin = make_url(admin_url).set(drivername="postgresql")

    async def create() -> None:
        connection = await asyncpg.connect(admin.render_as_string(hide_password=False))
        try:
            await connection.execute(f'CREATE DATABASE "{name}"')
        finally:
            await connection.close()

    async def drop() -> None:
        connection = await asyncpg.connect(admin.render_as_string(hide_password=False))
        try:
            await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await connection.close()

    asyncio.run(create())
    url = admin.set(database=name).render_as_string(hide_password=False)
    from prepbot.store.db import Database

    async def upgrade() -> None:
        db = Database(url)
        await db.upgrade()
        await db.close()

    asyncio.run(upgrade())
    yield url
    asyncio.run(drop())


def _truncate(url: str) -> None:
    import asyncpg
    from sqlalchemy.engine import make_url

    async def run() -> None:
        plain = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        connection = await asyncpg.connect(plain)
        try:
            await connection.execute(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE")
        finally:
            await connection.close()

    asyncio.run(run())


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Return an empty database's URL: an SQLite file, then the real PostgreSQL server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'prepbot.db'}"
    url: str = request.getfixturevalue("postgres_url")
    _truncate(url)
    return url


@pytest.fixture
async def app(database_url: str, clock: Any) -> AsyncIterator[Any]:
    """Return prepbot's services on an empty database; the module's ``clock`` fixture sets time."""
    from prepbot.app import build_app
    from prepbot.settings import Settings

    built = await build_app(Settings.model_validate({"database": {"url": database_url}}), clock)
    yield built
    await built.close()


@pytest.fixture
def platform(app: Any) -> Any:
    """Register a recording fake as the 'fake' chat platform and return it."""
    from tests.fakes import RecordingPlatform

    fake = RecordingPlatform()
    app.services.ctx.platforms[fake.name] = fake
    return fake


SEED_HOSTS = ("x.com", "twitter.com")


@pytest.fixture(scope="session")
def seed_bank(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Return a pack of the built-in bank's 19 seed-post scenarios only (one per narrow topic).

    For tests whose point needs a topic with a single scenario ("the only question on
    calibration is open"), which the full bank no longer has.
    """
    import shutil

    root = tmp_path_factory.mktemp("seed-bank")
    shutil.copy(BUILTIN_PACK / "topics.yaml", root / "topics.yaml")
    (root / "scenarios").mkdir()
    for file in sorted((BUILTIN_PACK / "scenarios").glob("*.yaml")):
        source = yaml.safe_load(file.read_text(encoding="utf-8"))["source"]["url"]
        if source.split("/")[2] in SEED_HOSTS:
            shutil.copy(file, root / "scenarios" / file.name)
    return root


def seed_catalog(seed_bank: Path) -> Any:
    """Return a Catalog of the seed-post scenarios (see ``seed_bank``)."""
    from prepbot.content.catalog import Catalog
    from prepbot.content.loader import load_packs

    report = load_packs([seed_bank], builtin_topics=False)
    assert report.ok, report.problems
    return Catalog((s.scenario for s in report.scenarios), report.topics)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the slow tests first, the longest first, so no worker is left with one at the end.

    ``--dist worksteal`` (pyproject's addopts) lets an idle worker take queued tests from a busy
    one, but a test already running cannot move: one that starts last decides the run's end.
    ``@pytest.mark.slow(seconds=N)`` gives N, its duration in the last CI run.
    """

    def seconds(item: pytest.Item) -> float:
        marker = item.get_closest_marker("slow")
        return 0.0 if marker is None else float(marker.kwargs.get("seconds", 60))

    items.sort(key=seconds, reverse=True)  # stable: the rest keep their order
