"""The composition root: builds the database, the catalog, the services and the platforms.

Nothing is built at import time; ``prepbot run`` and the tests call these functions. This is
the one module that may wire concrete platforms to services.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import secrets
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from sqlalchemy.engine import make_url

from prepbot.content.catalog import Catalog
from prepbot.content.loader import load_packs
from prepbot.core.clock import Clock, ManualClock
from prepbot.observability import error_line
from prepbot.platforms.console.platform import ConsolePlatform
from prepbot.platforms.console.session import ConsoleSession
from prepbot.services import Services
from prepbot.services.base import ServiceContext
from prepbot.settings import Settings
from prepbot.store.db import Database

log = logging.getLogger(__name__)

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
    for warning in report.warnings:
        log.warning("content: %s", warning)
    return Catalog((s.scenario for s in report.scenarios), report.topics)


@dataclass
class App:
    """A running prepbot: its database and services."""

    db: Database
    services: Services

    async def close(self) -> None:
        """Store the answers still queued, then release the database."""
        await self.services.answers.close()
        await self.services.rounds.feedback.close()
        await self.services.private.close()
        close_grader = getattr(self.services.ctx.grader, "aclose", None)
        if close_grader is not None:
            await close_grader()
        await self.db.close()


class StartupError(Exception):
    """Start-up failed because of one setting; ``str()`` names it and what is wrong."""

    def __init__(self, setting: str | None, problem: str) -> None:
        if setting is None:  # not a setting: something to switch on at the platform
            super().__init__(problem)
            return
        env = "PREPBOT_" + setting.upper().replace(".", "__")
        super().__init__(f"setting {setting} ({env}): {problem}")


class PlatformUnreachable(Exception):
    """A platform could not be reached for now (network, timeouts, its own errors): retry."""


def safe_url(url: str) -> str:
    """Return a database URL with its password hidden."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def database_reason(settings: Settings, error: BaseException) -> str:
    """Say in one line, without secrets, why the configured database failed."""
    from prepbot.observability import error_line, redact
    from prepbot.store.db import CONNECT_TIMEOUT_SECONDS

    if isinstance(getattr(error, "orig", None) or error, TimeoutError):
        reason = f"no answer within {CONNECT_TIMEOUT_SECONDS} seconds"
    else:
        reason = error_line(error, named=False)
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
    from prepbot.llm_grader import make_grader

    ctx = ServiceContext(
        db=db,
        catalog=catalog or load_catalog(settings),
        clock=clock,
        default_schedule=settings.schedule.schedule(),
        grader=make_grader(settings.grading),
        grading_deadline=settings.grading.deadline_seconds,
        keep_answer_text=(
            timedelta(days=settings.database.keep_answer_text_days)
            if settings.database.keep_answer_text_days
            else None
        ),
    )
    services = Services.build(ctx)
    services.ctx.public_url = settings.http.base_url()  # /prep archive's links
    from prepbot.pictures import render_digest

    services.digests.draw = render_digest  # each digest's picture, drawn in-process
    return App(db=db, services=services)


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
        platform = ConsolePlatform(
            out, message_ids=f"c{secrets.token_hex(4)}-", pictures=pictures_dir(settings)
        )
        app.services.ctx.platforms[platform.name] = platform
        app.services.ctx.public_url = None  # no web server in the terminal: no dead links
        session = ConsoleSession(app.services, platform, clock, settings.console.member)
        await session.start()
        source = lines(session) if callable(lines) else lines
        async for line in source:
            if not await session.handle(line):
                break
    finally:
        await app.close()
        await lock.release()


def pictures_dir(settings: Settings) -> Path | None:
    """Return where the terminal saves digest pictures: beside an embedded database's file."""
    url = make_url(settings.database.url)
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return None
    return Path(url.database).resolve().parent / "prepbot-pictures"


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
    from prepbot.web.archive import ArchivePages

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
    starters = {
        name: starter
        for name, starter, configured in (
            ("slack", _start_slack, settings.slack.configured),
            ("discord", _start_discord, settings.discord.configured),
        )
        if configured
    }
    refused: list[StartupError] = []
    connecting: list[asyncio.Task[None]] = []
    restore: Callable[[], None] | None = None
    try:
        await apply_declared_subscriptions(app, settings)
        if settings.http.enabled:  # first, so /healthz says what is still connecting
            health = HealthServer(
                app.services.ctx.metrics,
                _health_checks(app, scheduler, runtimes, list(starters)),
                problems=app.services.status.health_problems,
                pages=ArchivePages(app.services).register,  # each group's /archive/<token>
            )
            await health.start(settings.http.host, settings.http.port)
        for name, starter in starters.items():
            # One try each before scheduling: a refusal (a bad token) raises here and stops us.
            if not await _connect(name, starter, settings, app, runtimes):
                retry = _keep_trying(name, starter, settings, app, runtimes, stop, refused)
                connecting.append(asyncio.create_task(retry, name=f"connect-{name}"))
        restore = prepare_to_serve()
        await run_scheduling(scheduler, leadership, stop, poll=takeover / 3)
        if refused:  # a platform refused us after a retry: a setting to fix
            raise refused[0]
    finally:
        if restore is not None:
            restore()
        for task in connecting:
            task.cancel()
        await asyncio.gather(*connecting, return_exceptions=True)
        if health is not None:
            await health.stop()
        for runtime in reversed(list(runtimes.values())):
            await runtime.stop()
        await app.close()
        await leadership.release()


GIL_SWITCH_SECONDS = 0.0005
"""How long a busy event loop may keep the GIL from a thread whose call has returned.

SQLite's driver (aiosqlite) runs every statement in a thread of its own, and pregrading
grades in one: at Python's default of 5 ms, each statement of an answer batch could wait that
long to come back while the loop parsed requests. At 0.5 ms SQLite stored 11-15% more answers
a second in the ingestion benchmark; PostgreSQL was unchanged.
"""


def prepare_to_serve() -> Callable[[], None]:
    """Tune the interpreter for serving, once start-up has built everything long-lived.

    The catalog and its search index, SQLAlchemy's mappers and compiled statements and the
    platforms' clients are about 250,000 objects. Each full collection walked them all, about
    100 ms with the 158-scenario bank, and every acknowledgement waiting then paid for it: the
    slowest 1% of answers under load. ``gc.freeze`` moves them to a generation never walked;
    objects made later are collected as before. See ``GIL_SWITCH_SECONDS`` for the other.
    Returns what gives both back. The one collection here pauses the loop once, ~0.1 s.
    """
    switch_interval, frozen = sys.getswitchinterval(), gc.get_freeze_count()
    gc.collect()
    gc.freeze()
    sys.setswitchinterval(GIL_SWITCH_SECONDS)

    def restore() -> None:
        """Give the interpreter back as it was (a process that serves again collects it all)."""
        sys.setswitchinterval(switch_interval)
        if not frozen:  # what froze it before us keeps its freeze
            gc.unfreeze()

    return restore


Starter = Callable[[Settings, App], Awaitable[Any]]
RETRY_FIRST, RETRY_MOST = 2.0, 120.0  # seconds between tries to reach a platform


async def _connect(
    name: str, start: Starter, settings: Settings, app: App, runtimes: dict[str, Any]
) -> bool:
    """Try once to connect a platform; False (and a reported problem) if it cannot be reached.

    A refusal that needs a person (a bad token, a switch to turn on) raises StartupError.
    """
    try:
        runtimes[name] = await start(settings, app)
    except PlatformUnreachable as error:
        app.services.ctx.problems.report(  # logged once per distinct error, not at every try
            f"platform:{name}",
            name,
            f"cannot reach {name.title()} ({error}); trying again, at most "
            f"{RETRY_MOST:.0f} s apart, while the rest keeps running",
        )
        return False
    app.services.ctx.problems.clear(f"platform:{name}")
    return True


async def _keep_trying(
    name: str,
    start: Starter,
    settings: Settings,
    app: App,
    runtimes: dict[str, Any],
    stop: asyncio.Event,
    refused: list[StartupError],
) -> None:
    """Retry connecting a platform with a doubling pause while the others keep serving.

    A refusal on a later try stops prepbot (``refused`` says why) with one line.
    """
    wait, tries = RETRY_FIRST, 1
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=wait)
        if stop.is_set():
            return
        tries += 1
        try:
            if await _connect(name, start, settings, app, runtimes):
                log.info("connected to %s after %d tries", name.title(), tries)
                return
        except StartupError as error:
            refused.append(error)
            stop.set()
            return
        wait = min(wait * 2, RETRY_MOST)


SLACK_REFUSALS = {
    "invalid_auth": "Slack does not know this token",
    "not_authed": "no token was sent",
    "account_inactive": "the token's app or user was deactivated",
    "token_revoked": "the token was revoked",
    "token_expired": "the token expired",
    "not_allowed_token_type": "this is the wrong kind of token",
    "missing_scope": "the app lacks a scope the manifest asks for; reinstall it",
    "invalid_token": "Slack does not know this token",
}


async def _start_slack(settings: Settings, app: App) -> Any:
    import aiohttp
    from slack_sdk.errors import SlackApiError

    from prepbot.platforms.slack.adapter import SlackRuntime

    runtime = SlackRuntime(settings.slack, app.services)
    try:
        await runtime.start()
    except SlackApiError as error:
        await runtime.stop()
        code = str(error.response.get("error", "error"))
        if code not in SLACK_REFUSALS:
            raise PlatformUnreachable(f"Slack answered {code}") from None
        setting = "slack.app_token" if "connections" in str(error) else "slack.bot_token"
        raise StartupError(setting, f"Slack refused it ({code}: {SLACK_REFUSALS[code]})") from None
    except (aiohttp.ClientError, OSError, TimeoutError) as error:
        await runtime.stop()
        if isinstance(error, OSError) and _is_bind_error(error):
            raise StartupError(
                "slack.http_port", f"cannot listen for Slack's requests: {error.strerror}"
            ) from None
        raise PlatformUnreachable(error_line(error)) from None
    return runtime


def _is_bind_error(error: OSError) -> bool:
    """Say whether an OSError is our own server failing to listen (not a failed connection)."""
    import errno

    return error.errno in (errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES)


async def _start_discord(settings: Settings, app: App) -> Any:
    import aiohttp
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
        portal = "https://discord.com/developers/applications"
        if settings.discord.application_id:
            portal += f"/{settings.discord.application_id}/bot"
        raise StartupError(
            None,
            "Discord refused to connect: the bot needs the Message Content Intent to read "
            "answers in threads. Turn on Bot → Privileged Gateway Intents → Message Content "
            f"Intent at {portal}, save, and start prepbot again. (The token is fine.)",
        ) from None
    except (
        discord.HTTPException,
        discord.GatewayNotFound,
        discord.ConnectionClosed,
        aiohttp.ClientError,
        OSError,
        TimeoutError,
    ) as error:
        await runtime.stop()
        raise PlatformUnreachable(error_line(error)) from None
    return runtime


def _health_checks(
    app: App, scheduler: Any, runtimes: dict[str, Any], platforms: list[str]
) -> dict[str, Any]:
    from sqlalchemy import text

    async def database() -> tuple[bool, str]:
        async with app.db.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
        return True, app.db.dialect

    async def scheduling() -> tuple[bool, str]:
        return True, "leading" if scheduler.leading else "standing by"

    checks: dict[str, Any] = {"database": database, "scheduler": scheduling}
    for name in platforms:

        async def connected(name: str = name) -> tuple[bool, str]:
            runtime = runtimes.get(name)
            if runtime is None:
                problem = next(iter(app.services.ctx.problems.current(name)), None)
                return False, problem.message if problem else "connecting"
            ok = bool(await runtime.connected())
            return ok, "connected" if ok else "disconnected"

        checks[name] = connected
    return checks


async def iterate(lines: Iterable[str]) -> AsyncIterator[str]:
    """Yield lines from a list, as if typed."""
    for line in lines:
        yield line
