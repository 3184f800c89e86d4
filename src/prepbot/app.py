"""The composition root: builds the database, the catalog, the services and the platforms.

Nothing is built at import time; ``prepbot run`` and the tests call these functions. This is
the one module that may wire concrete platforms to services.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TextIO

from prepbot.content.catalog import Catalog
from prepbot.content.loader import load_packs
from prepbot.core.clock import Clock, ManualClock
from prepbot.platforms.console.platform import ConsolePlatform
from prepbot.platforms.console.session import ConsoleSession
from prepbot.services import Services
from prepbot.services.base import ServiceContext
from prepbot.settings import Settings
from prepbot.store.db import Database

if TYPE_CHECKING:
    from prepbot.leadership import Leadership


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
        """Store the answers still queued, then release the database."""
        await self.services.answers.close()
        await self.db.close()


class StartupError(Exception):
    """Start-up failed because of one setting; ``str()`` names it and what is wrong."""

    def __init__(self, setting: str, problem: str) -> None:
        env = "PREPBOT_" + setting.upper().replace(".", "__")
        super().__init__(f"setting {setting} ({env}): {problem}")


def safe_url(url: str) -> str:
    """Return a database URL with its password hidden."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def database_reason(settings: Settings, error: BaseException) -> str:
    """Say in one line, without secrets, why the configured database failed."""
    from prepbot.observability import redact
    from prepbot.store.db import CONNECT_TIMEOUT_SECONDS

    cause = getattr(error, "orig", None) or error
    lines = str(cause).strip().splitlines()
    if isinstance(cause, TimeoutError):
        reason = f"no answer within {CONNECT_TIMEOUT_SECONDS} seconds"
    else:
        reason = lines[0] if lines else type(cause).__name__
    return redact(reason, settings.secrets())


async def build_app(settings: Settings, clock: Clock, catalog: Catalog | None = None) -> App:
    """Open and upgrade the database and wire the services to it."""
    db = Database(settings.database.url)
    try:
        await db.upgrade()
    except Exception as error:
        await db.close()
        reason = database_reason(settings, error)
        raise StartupError(
            "database.url", f"cannot use {safe_url(settings.database.url)}: {reason}"
        ) from None
    ctx = ServiceContext(
        db=db,
        catalog=catalog or load_catalog(settings),
        clock=clock,
        default_schedule=settings.schedule.schedule(),
    )
    return App(db=db, services=Services.build(ctx))


async def lock_embedded_database(settings: Settings) -> Leadership:
    """Return the database's leadership, already taken on SQLite so a second process stops.

    Called before the database is opened or any platform connects; on PostgreSQL the lock is
    only competed for later, by the scheduler.
    """
    from prepbot.leadership import SqliteSingleProcess, leadership_for

    lock = leadership_for(settings.database.url)
    if isinstance(lock, SqliteSingleProcess):
        try:
            await lock.acquire()  # raises AlreadyRunning for a second process on one file
        except OSError as error:
            raise StartupError(
                "database.url", f"cannot create the lock file {lock.path}: {error.strerror}"
            ) from None
    return lock


async def run_console(
    settings: Settings,
    lines: AsyncIterator[str] | Callable[[ConsoleSession], AsyncIterator[str]],
    out: TextIO,
    catalog: Catalog | None = None,
) -> None:
    """Run the terminal study group until the input ends or a line quits.

    ``lines`` may be a factory that gets the session, so a prompt can name the current member.
    """
    lock = await lock_embedded_database(settings)
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
            if not await session.handle(line):
                break
    finally:
        await app.close()
        await lock.release()


def chat_configured(settings: Settings) -> bool:
    """Say whether any chat platform has credentials."""
    return settings.slack.configured or settings.discord.configured


async def apply_declared_subscriptions(app: App, settings: Settings) -> None:
    """Create or update the study groups declared in the config file."""
    from prepbot.core.commands import Subscribe, parse_prep
    from prepbot.core.events import Place

    admin = app.services.admin
    for declared in settings.subscriptions:
        command = parse_prep(f"subscribe {declared.schedule}")
        assert isinstance(command, Subscribe)
        place = Place(declared.platform, declared.community, declared.channel)
        existing = await admin.subscription(place)
        if existing is None or not existing.active:
            await admin.subscribe(place, command.change)
        else:
            await admin.reschedule(existing, command.change)


async def run_bot(settings: Settings, stop: asyncio.Event) -> None:
    """Connect every configured platform, serve health and metrics, schedule until stopped."""
    from datetime import timedelta

    from prepbot.core.clock import SystemClock
    from prepbot.observability import HealthServer
    from prepbot.scheduling import RoundScheduler, run_scheduling

    leadership = await lock_embedded_database(settings)  # a second SQLite process stops here
    try:
        app = await build_app(settings, SystemClock())
    except BaseException:
        await leadership.release()
        raise
    runtimes: dict[str, Any] = {}
    health: HealthServer | None = None
    takeover = timedelta(seconds=settings.scheduler.takeover_seconds)
    scheduler = RoundScheduler(
        app.services,
        grace=timedelta(minutes=settings.scheduler.catch_up_minutes),
        safety_interval=min(takeover, timedelta(seconds=30)),
    )
    try:
        await apply_declared_subscriptions(app, settings)
        if settings.slack.configured:
            runtimes["slack"] = await _start_slack(settings, app)
        if settings.discord.configured:
            runtimes["discord"] = await _start_discord(settings, app)
        if settings.http.enabled:
            health = HealthServer(
                app.services.ctx.metrics,
                _health_checks(app, scheduler, runtimes),
                problems=app.services.status.health_problems,
            )
            await health.start(settings.http.host, settings.http.port)
        await run_scheduling(scheduler, leadership, stop, poll=takeover / 3)
    finally:
        if health is not None:
            await health.stop()
        for runtime in reversed(list(runtimes.values())):
            await runtime.stop()
        await app.close()
        await leadership.release()


async def _start_slack(settings: Settings, app: App) -> Any:
    from slack_sdk.errors import SlackApiError

    from prepbot.platforms.slack.adapter import SlackRuntime

    runtime = SlackRuntime(settings.slack, app.services)
    try:
        await runtime.start()
    except SlackApiError as error:
        await runtime.stop()
        code = error.response.get("error", "error")
        setting = "slack.app_token" if "connections" in str(error) else "slack.bot_token"
        raise StartupError(setting, f"Slack refused it ({code})") from None
    return runtime


async def _start_discord(settings: Settings, app: App) -> Any:
    import discord

    from prepbot.platforms.discord.adapter import DiscordRuntime

    runtime = DiscordRuntime(settings.discord, app.services)
    try:
        await runtime.start()
    except discord.LoginFailure:
        await runtime.stop()
        raise StartupError("discord.token", "Discord refused it (401 Unauthorized)") from None
    except discord.PrivilegedIntentsRequired:
        await runtime.stop()
        raise StartupError(
            "discord.token",
            "the bot needs the Message Content Intent: Developer Portal → Bot → turn it on",
        ) from None
    return runtime


def _health_checks(app: App, scheduler: Any, runtimes: dict[str, Any]) -> dict[str, Any]:
    from sqlalchemy import text

    async def database() -> tuple[bool, str]:
        async with app.db.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
        return True, app.db.dialect

    async def scheduling() -> tuple[bool, str]:
        return True, "leading" if scheduler.leading else "standing by"

    checks: dict[str, Any] = {"database": database, "scheduler": scheduling}
    for name, runtime in runtimes.items():

        async def connected(runtime: Any = runtime) -> tuple[bool, str]:
            ok = bool(await runtime.connected())
            return ok, "connected" if ok else "disconnected"

        checks[name] = connected
    return checks


async def iterate(lines: Iterable[str]) -> AsyncIterator[str]:
    """Yield lines from a list, as if typed."""
    for line in lines:
        yield line
