"""Seeing whether prepbot is healthy: metrics, the /healthz and /metrics endpoint, and logs.

Metrics are Prometheus counters and a histogram in a registry of their own (built when the
app is built, never at import). Logs are text or JSON lines, and every configured secret is
replaced by '***' before a line is written. Imports no chat platform library.
"""

from __future__ import annotations

import errno
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

log = logging.getLogger(__name__)


class Metrics:
    """The counters prepbot keeps, in their own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.rounds_posted = Counter(
            "prepbot_rounds_posted", "Questions posted.", ["platform"], registry=self.registry
        )
        self.rounds_revealed = Counter(
            "prepbot_rounds_revealed", "Rounds revealed.", ["platform"], registry=self.registry
        )
        self.digests_posted = Counter(
            "prepbot_digests_posted", "Weekly digests posted.", ["platform"], registry=self.registry
        )
        self.answers = Counter(
            "prepbot_answer_events",
            "Reply events handled, by outcome (recorded, late, duplicate, edited, …).",
            ["outcome"],
            registry=self.registry,
        )
        self.reactions_skipped = Counter(
            "prepbot_reactions_skipped",
            "Answers stored but not reacted to: more came than the platform lets a bot react.",
            ["platform"],
            registry=self.registry,
        )
        self.command_seconds = Histogram(
            "prepbot_command_seconds",
            "Time to run a /prep command, by subcommand.",
            ["command"],
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.platform_errors = Counter(
            "prepbot_platform_errors",
            "Errors from chat platforms and scheduled work, by kind.",
            ["platform", "kind"],
            registry=self.registry,
        )

        self.problems = Gauge(
            "prepbot_problems",
            "Problems prepbot has right now (a failing tick, a paused group, a platform down…).",
            ["component"],
            registry=self.registry,
        )
        self.paused_groups = Gauge(
            "prepbot_paused_study_groups",
            "Active study groups that are paused, by who paused them (platform or admin).",
            ["reason"],
            registry=self.registry,
        )
        self.tick_failures = Counter(
            "prepbot_tick_failures",
            "Scheduler ticks (or job rebuilds) that failed and will be retried.",
            registry=self.registry,
        )

    def exposition(self) -> bytes:
        """Return every metric in the Prometheus text format."""
        return generate_latest(self.registry)


@dataclass(frozen=True)
class Problem:
    """One thing wrong right now: which part, what, since when, and what to do."""

    key: str
    component: str
    message: str
    since: datetime


class Problems:
    """What is wrong right now, told to the logs once, to metrics, /healthz and /prep status.

    A part reports a problem under a key it chooses (``scheduler:tick``,
    ``subscription:12``, ``platform:slack``) and clears it when it is fixed; reporting the same
    message again changes nothing, so a retry loop logs once, not every second.
    """

    def __init__(self, metrics: Metrics | None = None) -> None:
        self.metrics = metrics
        self._current: dict[str, Problem] = {}
        self._components: set[str] = set()  # every component a gauge was set for

    def report(self, key: str, component: str, message: str) -> None:
        """Record (or update) a problem; log it when it is new or its message changed."""
        old = self._current.get(key)
        if old is not None and old.message == message:
            return
        since = old.since if old is not None else datetime.now(UTC)
        self._current[key] = Problem(key, component, message, since)
        log.warning("%s: %s", component, message)
        self._count()

    def clear(self, key: str) -> None:
        """Forget a problem that is fixed; log that it is."""
        old = self._current.pop(key, None)
        if old is not None:
            log.info("%s: fixed (%s)", old.component, old.message)
            self._count()

    def clear_matching(self, prefix: str, keep: Iterable[str] = ()) -> None:
        """Forget every problem whose key starts with ``prefix`` except those in ``keep``."""
        kept = set(keep)
        for key in [k for k in self._current if k.startswith(prefix) and k not in kept]:
            self.clear(key)

    def current(self, component: str | None = None) -> list[Problem]:
        """Return the problems now, oldest first (of one component if given)."""
        found = sorted(self._current.values(), key=lambda p: (p.since, p.key))
        return [p for p in found if component is None or p.component == component]

    def _count(self) -> None:
        if self.metrics is None:
            return
        counts: dict[str, int] = {}
        for problem in self._current.values():
            counts[problem.component] = counts.get(problem.component, 0) + 1
        self._components.update(counts)
        for component in self._components:
            self.metrics.problems.labels(component).set(counts.get(component, 0))


HealthCheck = Callable[[], Awaitable[tuple[bool, str]]]
ProblemSource = Callable[[], Awaitable[list[dict[str, Any]]]]


class HealthServer:
    """``/healthz`` (JSON) and ``/metrics``, and any pages ``pages`` adds (the web archive).

    ``/healthz`` says ``ok`` (200) when every check passes and nothing is wrong; ``degraded``
    (still 200: a paused study group must not take the instance out of a load balancer) when
    every check passes but ``problems`` lists something (each with what, where and since
    when); ``unhealthy`` (503) when a check fails, such as a database that does not answer.
    Reading either endpoint first calls ``problems``, which also refreshes its gauges.
    """

    def __init__(
        self,
        metrics: Metrics,
        checks: dict[str, HealthCheck],
        problems: ProblemSource | None = None,
        pages: Callable[[Any], None] | None = None,
    ) -> None:
        self.metrics = metrics
        self.checks = checks
        self.problems = problems
        self.pages = pages  # adds more routes (the web archive) to the aiohttp application
        self._runner: Any = None
        self.port: int | None = None

    async def start(self, host: str, port: int) -> None:
        """Listen on host:port (port 0 picks a free one)."""
        from aiohttp import web

        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/metrics", self._metrics)
        if self.pages is not None:
            self.pages(app)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        try:
            await web.TCPSite(self._runner, host, port).start()
        except OSError as error:
            await self.stop()
            raise _listen_failure(host, port, error) from None
        self.port = int(self._runner.addresses[0][1])
        log.info("health and metrics on http://%s:%s/healthz", host, self.port)

    async def stop(self) -> None:
        """Stop listening."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def report(self) -> tuple[bool, dict[str, Any]]:
        """Run every check; return whether all passed and what each said."""
        results: dict[str, Any] = {}
        healthy = True
        for name, check in self.checks.items():
            try:
                ok, detail = await check()
            except Exception as error:  # a failing check is a finding, not a crash
                ok, detail = False, f"{type(error).__name__}: {error}"
            results[name] = {"ok": ok, "detail": detail}
            healthy = healthy and ok
        return healthy, results

    async def current_problems(self) -> list[dict[str, Any]]:
        """Return what is wrong right now; a source that fails is itself a problem."""
        if self.problems is None:
            return []
        try:
            return await self.problems()
        except Exception as error:  # e.g. the database is down: its check says so too
            return [
                {
                    "key": "health:problems",
                    "component": "health",
                    "message": f"cannot list current problems: {type(error).__name__}: {error}",
                    "since": datetime.now(UTC).isoformat(),
                }
            ]

    async def _healthz(self, _: Any) -> Any:
        from aiohttp import web

        healthy, results = await self.report()
        problems = await self.current_problems()
        status = "unhealthy" if not healthy else "degraded" if problems else "ok"
        body = {"status": status, "checks": results, "problems": problems}
        return web.json_response(body, status=200 if healthy else 503)

    async def _metrics(self, _: Any) -> Any:
        from aiohttp import web

        await self.current_problems()  # brings the gauges behind the problems up to date
        return web.Response(
            body=self.metrics.exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )


def _listen_failure(host: str, port: int, error: OSError) -> Exception:
    """Name the setting to change when the health endpoint cannot listen, in one line."""
    from prepbot.app import StartupError  # imported late: app builds on this module

    if error.errno == errno.EADDRINUSE:
        return StartupError(
            "http.port",
            f"{host}:{port} is already in use (another prepbot or another program listens "
            "there); choose a free port, or 0 for any",
        )
    reason = error.strerror or str(error)
    return StartupError("http.host", f"cannot listen on {host}:{port}: {reason}")


def error_line(error: BaseException, *, named: bool = True) -> str:
    """Return one line for an error: its type (unless ``named`` is False) and first message line.

    A database error is told by the driver's own error under it (SQLAlchemy's ``orig``).
    """
    cause = getattr(error, "orig", None) or error
    lines = str(cause).strip().splitlines()
    first, name = (lines[0][:200] if lines else ""), type(cause).__name__
    if not first:
        return name
    return f"{name}: {first}" if named else first


def redact(text: str, secrets: Iterable[str]) -> str:
    """Replace every secret in ``text`` with '***', longest first."""
    for secret in sorted({s for s in secrets if len(s) >= 6}, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


class RedactSecrets(logging.Filter):
    """Replace every configured secret in a log record with '***'."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self.secrets = [s for s in secrets if len(s) >= 6]

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the record's message (and exception text) without the secrets."""
        if not self.secrets:
            return True
        message = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text, self.secrets)
        record.msg, record.args = redact(message, self.secrets), ()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message (and the exception)."""

    def format(self, record: logging.LogRecord) -> str:
        """Return the record as a JSON line."""
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info or record.exc_text:
            entry["exception"] = record.exc_text or self.formatException(record.exc_info)  # type: ignore[arg-type]
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(format: str, level: str, secrets: Iterable[str]) -> None:
    """Send logs to standard error as text or JSON, secrets redacted."""
    handler = logging.StreamHandler()
    handler.setFormatter(
        JsonFormatter()
        if format == "json"
        else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    handler.addFilter(RedactSecrets(secrets))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("discord", "slack_bolt", "slack_sdk", "apscheduler", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(max(logging.INFO, root.level))


class Timer:
    """Measure the time of a block, for a histogram."""

    def __enter__(self) -> Timer:
        self.started = time.perf_counter()
        return self

    def __exit__(self, *_: object) -> None:
        self.seconds = time.perf_counter() - self.started
