"""``prepbot doctor``: check configuration, database, content and platform credentials.

Each check says what it found and, when something is wrong, how to fix it. Secrets never
appear in what it prints. Platform libraries are imported only when that platform is set up.
"""

from __future__ import annotations

from dataclasses import dataclass

from prepbot.settings import Settings


@dataclass(frozen=True)
class Finding:
    """The result of one check."""

    ok: bool
    check: str
    detail: str
    fix: str = ""

    def line(self) -> str:
        """Return the finding as one printable line."""
        mark = "✓" if self.ok else "✗"
        fix = f" — fix: {self.fix}" if self.fix and not self.ok else ""
        return f"{mark} {self.check}: {self.detail}{fix}"


async def diagnose(settings: Settings) -> list[Finding]:
    """Run every check and return what each found."""
    findings = [Finding(True, "settings", "valid")]
    findings.append(_content(settings))
    findings.append(await _database(settings))
    if settings.slack.configured:
        findings.append(await _slack(settings))
    if settings.discord.configured:
        findings.append(await _discord(settings))
    if not (settings.slack.configured or settings.discord.configured):
        findings.append(
            Finding(
                not settings.require_platform,
                "platforms",
                "none configured: `prepbot run` plays in the terminal",
                "set PREPBOT_SLACK__BOT_TOKEN (+ _APP_TOKEN) or PREPBOT_DISCORD__TOKEN",
            )
        )
    return _redacted(findings, settings.secrets())


def _redacted(findings: list[Finding], secrets: list[str]) -> list[Finding]:
    from prepbot.observability import redact

    return [
        Finding(f.ok, f.check, redact(f.detail, secrets), redact(f.fix, secrets)) for f in findings
    ]


def _content(settings: Settings) -> Finding:
    from prepbot.content.loader import load_packs

    report = load_packs(settings.content.pack_paths())
    if report.ok:
        return Finding(True, "content", report.summary())
    return Finding(
        False,
        "content",
        f"{len(report.problems)} problems, first: {report.problems[0]}",
        "run `prepbot content check` and fix each file it names",
    )


async def _database(settings: Settings) -> Finding:
    from alembic.script import ScriptDirectory

    from prepbot.app import database_reason, safe_url
    from prepbot.store.db import Database, alembic_config

    where = safe_url(settings.database.url)
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    db = Database(settings.database.url)
    try:
        current = await db.current_revision()
    except Exception as error:
        reason = database_reason(settings, error)
        return Finding(
            False,
            "database",
            f"cannot connect to {where}: {reason}",
            "check PREPBOT_DATABASE__URL and that the server is up",
        )
    finally:
        await db.close()
    if current != head:
        return Finding(
            False,
            "database",
            f"{where} is at schema {current or 'none'}, the code needs {head}",
            "run `prepbot db upgrade` (prepbot run also does it on start)",
        )
    return Finding(True, "database", f"{where}, schema {current}")


async def _slack(settings: Settings) -> Finding:
    from slack_sdk.errors import SlackApiError
    from slack_sdk.web.async_client import AsyncWebClient

    assert settings.slack.bot_token is not None
    client = AsyncWebClient(
        token=settings.slack.bot_token.get_secret_value(), base_url=settings.slack.api_url
    )
    try:
        identity = await client.auth_test()
    except SlackApiError as error:
        code = error.response.get("error", "error")
        return Finding(
            False,
            "slack",
            f"auth.test says {code}",
            "check PREPBOT_SLACK__BOT_TOKEN (OAuth & Permissions → Bot User OAuth Token)",
        )
    except Exception as error:
        return Finding(False, "slack", f"cannot reach {settings.slack.api_url}: {error}", _NET)
    team = identity.get("team") or identity.get("team_id")
    return Finding(True, "slack", f"bot {identity.get('user')} in workspace {team}")


async def _discord(settings: Settings) -> Finding:
    import aiohttp

    assert settings.discord.token is not None
    url = settings.discord.api_url.rstrip("/") + "/users/@me"
    headers = {"Authorization": f"Bot {settings.discord.token.get_secret_value()}"}
    try:
        async with aiohttp.ClientSession() as session, session.get(url, headers=headers) as reply:
            body = await reply.json(content_type=None)
            status = reply.status
    except Exception as error:
        return Finding(False, "discord", f"cannot reach {settings.discord.api_url}: {error}", _NET)
    if status == 401:
        return Finding(
            False,
            "discord",
            "/users/@me says 401 Unauthorized",
            "check PREPBOT_DISCORD__TOKEN (Developer Portal → Bot → Reset Token)",
        )
    if status != 200:
        return Finding(False, "discord", f"/users/@me says {status}", _NET)
    return Finding(True, "discord", f"bot {body.get('username')} (id {body.get('id')})")


_NET = "check the network and the API URL settings"
