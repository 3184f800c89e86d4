"""The composition root: builds the database, the catalog, the services and the platforms.

Nothing is built at import time; ``prepbot run`` and the tests call these functions. This is
the one module that may wire concrete platforms to services.
"""

from __future__ import annotations

import asyncio
import secrets
import sys
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TextIO

from prepbot.content.catalog import Catalog
from prepbot.content.loader import load_packs
from prepbot.core.clock import Clock, ManualClock
from prepbot.platforms.console.platform import ConsolePlatform
from prepbot.platforms.console.session import ConsoleSession
from prepbot.services import Services
from prepbot.services.base import ServiceContext
from prepbot.settings import Settings
from prepbot.store.db import Database


class ContentError(Exception):
    """The configured content packs have problems; ``problems`` lists them."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__(f"{len(problems)} problems in the content packs")
        self.problems = problems


def load_catalog(settings: Settings) -> Catalog:
    """Load the configured packs into a catalog, or raise ContentError listing every problem."""
    report = load_packs(settings.content.pack_paths())
    if not report.ok:
        raise ContentError([str(p) for p in report.problems])
    return Catalog((s.scenario for s in report.scenarios), report.topics)


@dataclass
class App:
    """A running prepbot: its database and services."""

    db: Database
    services: Services

    async def close(self) -> None:
        """Release the database."""
        await self.db.close()


async def build_app(settings: Settings, clock: Clock, catalog: Catalog | None = None) -> App:
    """Open and upgrade the database and wire the services to it."""
    db = Database(settings.database.url)
    await db.upgrade()
    ctx = ServiceContext(
        db=db,
        catalog=catalog or load_catalog(settings),
        clock=clock,
        default_schedule=settings.schedule.schedule(),
    )
    return App(db=db, services=Services.build(ctx))


async def run_console(
    settings: Settings,
    lines: AsyncIterator[str] | Callable[[ConsoleSession], AsyncIterator[str]],
    out: TextIO,
    catalog: Catalog | None = None,
) -> None:
    """Run the terminal study group until the input ends.

    ``lines`` may be a factory that gets the session, so a prompt can name the current member.
    """
    from prepbot.leadership import SqliteSingleProcess, leadership_for

    lock = leadership_for(settings.database.url)
    if isinstance(lock, SqliteSingleProcess):
        await lock.acquire()  # raises AlreadyRunning for a second process on one file
    clock = ManualClock(datetime.now(UTC))
    try:
        app = await build_app(settings, clock, catalog)
    except BaseException:
        await lock.release()
        raise
    try:
        platform = ConsolePlatform(out, message_ids=f"c{secrets.token_hex(4)}-")
        app.services.ctx.platforms[platform.name] = platform
        session = ConsoleSession(app.services, platform, clock, settings.console.member)
        await session.start()
        source = lines(session) if callable(lines) else lines
        async for line in source:
            await session.handle(line)
    finally:
        await app.close()
        if isinstance(lock, SqliteSingleProcess):
            await lock.release()


async def run_scheduler(app: App, settings: Settings, stop: asyncio.Event) -> None:
    """Schedule rounds until ``stop`` is set: lead when possible, stand by otherwise."""
    from datetime import timedelta

    from prepbot.leadership import leadership_for
    from prepbot.scheduling import RoundScheduler, run_scheduling

    takeover = timedelta(seconds=settings.scheduler.takeover_seconds)
    scheduler = RoundScheduler(
        app.services,
        grace=timedelta(minutes=settings.scheduler.catch_up_minutes),
        safety_interval=min(takeover, timedelta(seconds=30)),
    )
    await run_scheduling(scheduler, leadership_for(settings.database.url), stop, poll=takeover / 3)


def chat_configured(settings: Settings) -> bool:
    """Say whether any chat platform has credentials."""
    return settings.slack.configured or settings.discord.configured


async def run_bot(settings: Settings, stop: asyncio.Event) -> None:
    """Connect every configured platform and schedule rounds until ``stop`` is set."""
    from prepbot.core.clock import SystemClock

    app = await build_app(settings, SystemClock())
    runtimes: list[Any] = []
    try:
        if settings.slack.configured:
            from prepbot.platforms.slack.adapter import SlackRuntime

            slack = SlackRuntime(settings.slack, app.services)
            await slack.start()
            runtimes.append(slack)
        if settings.discord.configured:
            from prepbot.platforms.discord.adapter import DiscordRuntime

            discord_runtime = DiscordRuntime(settings.discord, app.services)
            await discord_runtime.start()
            runtimes.append(discord_runtime)
        await run_scheduler(app, settings, stop)
    finally:
        for runtime in reversed(runtimes):
            await runtime.stop()
        await app.close()


async def stdin_lines(prompt: Callable[[], str] = lambda: "> ") -> AsyncIterator[str]:
    """Yield lines from standard input without blocking the event loop; prompt on a terminal."""
    interactive = sys.stdin.isatty()
    while True:
        if interactive:
            sys.stdout.write(prompt())
            sys.stdout.flush()
        line = await asyncio.to_thread(sys.stdin.readline)
        if not line:
            return
        yield line


async def iterate(lines: Iterable[str]) -> AsyncIterator[str]:
    """Yield lines from a list, as if typed."""
    for line in lines:
        yield line
