"""The ``prepbot`` command line: content tools now, the bot's run and database commands later.

Typer commands only parse arguments and print; the work happens in ``prepbot.content`` and
friends, imported inside each command so ``prepbot --help`` stays fast. Imports no chat
platform at module level.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

if TYPE_CHECKING:
    from rich.console import Console

    from prepbot.content.catalog import Catalog
    from prepbot.content.loader import PackReport
    from prepbot.settings import Settings

app = typer.Typer(
    name="prepbot",
    help="A daily AI/ML interview-prep study group for your Slack or Discord channel.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
content_app = typer.Typer(
    help="Check, import, search and show the question bank.", no_args_is_help=True
)
app.add_typer(content_app, name="content")
db_app = typer.Typer(help="Manage the database schema.", no_args_is_help=True)
app.add_typer(db_app, name="db")
discord_app = typer.Typer(help="Discord helpers.", no_args_is_help=True)
app.add_typer(discord_app, name="discord")


def main() -> None:
    """Run the command line."""
    app()


def _print_version(wanted: bool) -> None:
    """Print ``prepbot <version>`` and stop, for ``--version``."""
    if not wanted:
        return
    from importlib.metadata import PackageNotFoundError, version

    try:
        found = version("prepbot")
    except PackageNotFoundError:  # run from a source checkout that is not installed
        from prepbot import __version__ as found
    _say(f"prepbot {found}")
    raise typer.Exit()


@app.callback()
def _options(
    _version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_print_version,
            is_eager=True,
            help="Print prepbot's version and exit.",
        ),
    ] = False,
) -> None:
    """Turn a Slack or Discord channel into a daily AI/ML interview-prep study group."""


def _console(stderr: bool = False) -> Console:
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=False)


def _say(text: str, err: bool = False) -> None:
    """Print a plain line, never wrapped, so 'path:line:' stays clickable in editors."""
    typer.echo(text, err=err)


def _fail(message: str, code: int = 2) -> NoReturn:
    _say(f"error: {message}", err=True)
    raise typer.Exit(code)


def _settings() -> Settings:
    from prepbot.settings import SettingsError, load_settings

    try:
        return load_settings()
    except SettingsError as error:
        for problem in error.problems[:-1]:
            _say(f"error: invalid {problem}", err=True)
        _fail(f"invalid {error.problems[-1]}")


def _load(paths: list[Path] | None = None) -> PackReport:
    from prepbot.content.loader import load_packs

    return load_packs(paths or _settings().content.pack_paths())


def _catalog() -> Catalog:
    """Load the configured packs; refuse to go on if any of them has a problem."""
    from prepbot.content.catalog import Catalog

    report = _checked()
    return Catalog((s.scenario for s in report.scenarios), report.topics)


def _checked(paths: list[Path] | None = None) -> PackReport:
    """Load the given (else the configured) packs; refuse to go on if any has a problem."""
    report = _load(paths)
    if not report.ok:
        for problem in report.problems:
            _say(str(problem), err=True)
        _fail(
            f"{len(report.problems)} problems in the {'given' if paths else 'configured'} "
            "content packs; run 'prepbot content check' for details"
        )
    return report


@content_app.command("check")
def content_check(
    paths: Annotated[
        list[Path] | None,
        typer.Argument(help="Pack folders or scenario files (default: the configured packs)."),
    ] = None,
) -> None:
    """Validate content packs and report every problem at once."""
    report = _load(paths)
    problems = sorted([*report.problems, *report.warnings])
    for problem in problems:
        _say(str(problem))
    if problems:
        from prepbot.content.loader import plural

        files = len({p.path for p in problems})
        _say(
            f"FAILED: {plural(len(problems), 'problem')} in {plural(files, 'file')}; "
            f"without them: {report.summary()}"
        )
        raise typer.Exit(1)
    _say(f"OK: {report.summary()}")


@content_app.command("stats")
def content_stats(
    paths: Annotated[
        list[Path] | None,
        typer.Argument(help="Pack folders or scenario files (default: the configured packs)."),
    ] = None,
) -> None:
    """Count scenarios by kind, difficulty, topic and audience; list gaps in their sources."""
    from prepbot.content.stats import bank_stats, render_stats

    report = _checked(paths)
    _say(render_stats(bank_stats([s.scenario for s in report.scenarios], report.topics)))


@content_app.command("import")
def content_import(
    file: Annotated[Path, typer.Argument(help="A link-summary file in the seed format.")],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Folder for the draft scenario files.")
    ] = Path("drafts"),
    force: Annotated[bool, typer.Option(help="Overwrite drafts that already exist.")] = False,
) -> None:
    """Turn a link-summary file into draft scenario files, one per entry."""
    from rich.progress import track

    from prepbot.content.importer import import_file
    from prepbot.content.loader import builtin_pack_path, load_packs

    if not file.is_file():
        _fail(f"{file}: no such file")
    topics = load_packs([builtin_pack_path()]).topics

    def progress(entries: object, total: int) -> object:
        return track(
            entries,  # type: ignore[arg-type]
            total=total,
            description="Importing",
            disable=total < 50,
            console=_console(stderr=True),
        )

    try:
        result = import_file(file, out, topics, force=force, progress=progress)  # type: ignore[arg-type]
    except UnicodeDecodeError as error:
        _fail(f"{file}: not UTF-8 text ({error.reason})")
    for problem in result.problems:
        _say(f"{file}:{problem.line}: skipped: {problem.message}")
    for path in result.kept:
        _say(f"{path}: exists, kept (use --force to overwrite)")
    _say(
        f"{len(result.written)} drafts written to {out}, {len(result.kept)} kept, "
        f"{len(result.problems)} entries skipped. Fill every TODO, then run "
        f"'prepbot content check {out}'."
    )
    if result.problems or result.kept:
        raise typer.Exit(1)


@content_app.command("search")
def content_search(
    words: Annotated[list[str], typer.Argument(help="Words to look for.")],
    limit: Annotated[int, typer.Option(min=1, max=100, help="At most this many results.")] = 10,
) -> None:
    """Find scenarios by words in their title, prompts, insights, topics, company or author."""
    from prepbot.terminal import render_search

    query = " ".join(words)
    hits = _catalog().search(query, limit=limit)
    if not hits:
        _say(f"No scenario matches '{query}'. Try fewer or other words.")
        raise typer.Exit(1)
    _console().print(render_search(query, hits))


@content_app.command("show")
def content_show(
    scenario_id: Annotated[str, typer.Argument(metavar="ID", help="A scenario id.")],
) -> None:
    """Show one scenario in full: prompts, trap, insights, follow-ups and source."""
    from prepbot.terminal import render_reveal, render_scenario

    catalog = _catalog()
    scenario = catalog.get(scenario_id)
    if scenario is None:
        close = catalog.suggest_ids(scenario_id)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        _fail(f"no scenario with id '{scenario_id}'.{hint}", code=1)
    console = _console()
    console.print(render_scenario(scenario, catalog.topics))
    console.print(render_reveal(scenario))


@content_app.command("schema")
def content_schema(
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write to this file instead of stdout.")
    ] = None,
) -> None:
    """Print the JSON Schema of a scenario file, with the configured topics, for editors."""
    import json

    from prepbot.content.schema import scenario_json_schema

    report = _load()
    text = json.dumps(scenario_json_schema(sorted(report.topics)), indent=2) + "\n"
    if out is None:
        typer.echo(text, nl=False)
    else:
        out.write_text(text, encoding="utf-8")


@content_app.command("grade")
def content_grade(
    scenario_id: Annotated[str, typer.Argument(metavar="ID", help="A scenario id.")],
    packs: Annotated[
        list[Path] | None,
        typer.Option(
            "--pack",
            help="A pack folder or scenario file to use instead of the configured packs; repeat "
            "for more.",
        ),
    ] = None,
) -> None:
    """Grade an answer read from standard input against a scenario's rubric; print JSON.

    Shows what a member's answer would earn: the key points it covers (with the words that
    matched), the ones it misses, the red flags it raises and whether it reads as a bare list.
    """
    import json
    import sys

    from prepbot.content.catalog import Catalog
    from prepbot.core.grading import grade

    report = _checked(packs)
    catalog = Catalog((s.scenario for s in report.scenarios), report.topics)
    scenario = catalog.get(scenario_id)
    if scenario is None:
        close = catalog.suggest_ids(scenario_id)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        _fail(f"no scenario with id '{scenario_id}'.{hint}", code=1)
    if scenario.rubric is None:
        path = next(s.path for s in report.scenarios if s.scenario.id == scenario.id)
        _fail(
            f"scenario '{scenario.id}' has no rubric, so there is nothing to grade against; "
            f"add rubric.key_points to {path}",
            code=1,
        )
    if sys.stdin.isatty():
        _say("Type or paste the answer, then press Ctrl-D.", err=True)
    answer = typer.get_text_stream("stdin").read()
    if not answer.strip():
        _fail(
            "no answer on standard input; pipe one in: prepbot content grade ID < answer.txt",
            code=1,
        )
    result = {"scenario": scenario.id, **grade(answer, scenario.rubric).to_json()}
    typer.echo(json.dumps(result, indent=2, ensure_ascii=False))


@app.command("ask")
def ask(
    topic: Annotated[str | None, typer.Argument(help="Only questions on this topic.")] = None,
    scenario_id: Annotated[
        str | None, typer.Option("--id", help="Practise this scenario instead of a random one.")
    ] = None,
) -> None:
    """Practise one question in the terminal: answer it, then see the key insights."""
    import random
    import sys

    from prepbot.terminal import render_reveal, render_scenario

    catalog = _catalog()
    if scenario_id is not None:
        chosen = catalog.get(scenario_id)
        if chosen is None:
            _fail(f"no scenario with id '{scenario_id}'", code=1)
        pool = [chosen]
    elif topic is not None:
        if topic not in catalog.topics:
            _fail(f"unknown topic '{topic}'. Topics: {', '.join(sorted(catalog.topics))}", code=1)
        pool = catalog.with_topic(topic)
        if not pool:
            _fail(f"no scenario has the topic '{topic}' yet", code=1)
    else:
        pool = catalog.scenarios
    scenario = random.choice(pool)
    console = _console()
    console.print(render_scenario(scenario, catalog.topics))
    interactive = sys.stdin.isatty()
    if interactive:
        console.print("Type your answer; an empty line reveals the insights.", style="dim")
    answer = []
    for line in sys.stdin:
        if interactive and not line.strip():
            break
        answer.append(line.rstrip("\n"))
    if answer:
        console.print(f"Your answer: {len(' '.join(answer).split())} words.", style="dim")
    console.print(render_reveal(scenario))


@app.command("run")
def run() -> None:
    """Run the bot. With no Slack or Discord configured: a study group in this terminal."""
    import sys

    from prepbot.app import run_console, safe_url
    from prepbot.platforms.console.lines import console_lines, on_a_terminal

    settings = _settings()
    from prepbot.app import chat_configured

    if chat_configured(settings):
        _run_bot(settings)
        return
    if settings.require_platform:
        _fail(
            "no chat platform configured and require_platform is set: give "
            "PREPBOT_SLACK__BOT_TOKEN (with PREPBOT_SLACK__APP_TOKEN or _SIGNING_SECRET) or "
            "PREPBOT_DISCORD__TOKEN"
        )
    if on_a_terminal():
        _say(
            "prepbot: no Slack or Discord configured, so this terminal is the chat channel "
            f"(database: {safe_url(settings.database.url)}). To connect, set "
            "PREPBOT_SLACK__BOT_TOKEN and PREPBOT_SLACK__APP_TOKEN, or PREPBOT_DISCORD__TOKEN. "
            "Type /help; /quit or Ctrl-C quits.",
            err=True,
        )
    _serve(
        lambda: run_console(
            settings,
            lambda session: console_lines(lambda: f"{session.member.name}> "),
            sys.stdout,
        )
    )


def _serve(main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run prepbot's main coroutine; turn start-up failures into one-line errors."""
    import asyncio

    from prepbot.app import ContentError, StartupError
    from prepbot.leadership import AlreadyRunning

    try:
        asyncio.run(main())
    except ContentError as error:
        for problem in error.problems:
            _say(problem, err=True)
        _fail(f"{error}; run 'prepbot content check' for details")
    except (AlreadyRunning, StartupError) as error:
        _fail(str(error))
    except KeyboardInterrupt:
        raise typer.Exit(130) from None


def _run_bot(settings: Settings) -> None:
    """Run the configured chat platforms and the scheduler until SIGTERM or Ctrl-C."""
    import asyncio
    import signal

    from prepbot.app import run_bot
    from prepbot.observability import configure_logging

    configure_logging(settings.log.format, settings.log.level, settings.secrets())

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await run_bot(settings, stop)

    _serve(main)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Create or upgrade the database schema to the latest version."""
    from prepbot.app import safe_url

    async def upgrade(db: Any) -> str | None:
        await db.upgrade()
        return await db.current_revision()  # type: ignore[no-any-return]

    revision = _database_run(upgrade)
    _say(f"database {safe_url(_settings().database.url)} is at revision {revision}")


def _database_run(work: Callable[[Any], Coroutine[Any, Any, Any]]) -> Any:
    """Run ``work(db)`` on the configured database; a database that fails is one line."""
    import asyncio

    from prepbot.app import StartupError, database_reason, safe_url
    from prepbot.store.db import Database

    settings = _settings()

    async def run() -> Any:
        db = Database(settings.database.url)
        try:
            return await work(db)
        finally:
            await db.close()

    try:
        return asyncio.run(run())
    except Exception as error:
        reason = database_reason(settings, error)
        url = safe_url(settings.database.url)
        _fail(str(StartupError("database.url", f"cannot use {url}: {reason}")))


@db_app.command("recount")
def db_recount() -> None:
    """Rebuild the leaderboard tallies from the stored answers; say how many were off."""
    from prepbot.services.tallies import recount

    async def work(db: Any) -> int:
        await db.upgrade()
        async with db.deciding() as session:  # answers and reveals being stored finish first
            return await recount(session, db.dialect)

    wrong = _database_run(work)
    _say(
        "tallies recounted from the answers: "
        + (f"{wrong:,} were off and are fixed" if wrong else "all matched")
    )


@db_app.command("current")
def db_current() -> None:
    """Print the database's schema revision (and whether it is the newest this prepbot has)."""
    from prepbot.app import safe_url
    from prepbot.store.db import revision_history

    async def current(db: Any) -> str | None:
        return await db.current_revision()  # type: ignore[no-any-return]

    revision = _database_run(current)
    newest = revision_history()[0][0]
    url = safe_url(_settings().database.url)
    if revision is None:
        _say(f"database {url} is empty (no schema yet): run `prepbot db upgrade`")
    elif revision == newest:
        _say(f"database {url} is at revision {revision} (the newest)")
    else:
        _say(f"database {url} is at revision {revision}; `prepbot db upgrade` brings {newest}")


@db_app.command("history")
def db_history() -> None:
    """List the schema's revisions this prepbot ships, newest first."""
    from prepbot.store.db import revision_history

    for revision, _, title in revision_history():
        _say(f"{revision}  {title.splitlines()[0] if title else ''}".rstrip())


@db_app.command("backup")
def db_backup(
    path: Annotated[Path, typer.Argument(help="Where to write the copy (a new file).")],
) -> None:
    """Copy the SQLite database to PATH while the bot runs (PostgreSQL: use pg_dump)."""
    from prepbot.store.db import BackupError, backup_sqlite

    try:
        backup_sqlite(_settings().database.url, path)
    except BackupError as error:
        _fail(str(error))
    _say(f"backed up to {path} ({path.stat().st_size:,} bytes)")


@app.command("export")
def export(
    folder: Annotated[Path, typer.Argument(help="The folder to write the files into.")],
    group: Annotated[
        str | None, typer.Option(help="Only this channel's study group (its channel id).")
    ] = None,
    since: Annotated[
        str | None, typer.Option(help="Only rounds on or after this date (YYYY-MM-DD).")
    ] = None,
    until: Annotated[
        str | None, typer.Option(help="Only rounds on or before this date (YYYY-MM-DD).")
    ] = None,
) -> None:
    """Write study groups, rounds, answers, members, streaks, feedback and the audit log.

    One JSON Lines file per table, every column; answers, members and streaks also as CSV.
    """
    from datetime import date

    from prepbot.export import ExportFilter, export_tables

    def day(value: str | None, option: str) -> date | None:
        if value is None:
            return None
        try:
            return date.fromisoformat(value)
        except ValueError:
            _fail(f"{option} takes a date like 2026-11-30, not {value!r}")

    chosen = ExportFilter(group, day(since, "--since"), day(until, "--until"))
    if chosen.since and chosen.until and chosen.since > chosen.until:
        _fail("--since is after --until: no round can be in between")

    async def work(db: Any) -> dict[str, int]:
        return await export_tables(db, folder, chosen)

    written = _database_run(work)
    if group is not None and not written["groups"]:
        _fail(f"no study group has channel id {group!r}; `prepbot export` without --group has all")
    _say(", ".join(f"{name} {count:,}" for name, count in written.items()) + f" → {folder}")


@discord_app.command("invite-url")
def discord_invite_url(
    application_id: Annotated[
        int | None,
        typer.Option(help="The application id (default: PREPBOT_DISCORD__APPLICATION_ID)."),
    ] = None,
) -> None:
    """Print the URL that adds the bot to a server with exactly the permissions it needs."""
    from prepbot.platforms.discord.adapter import invite_url

    chosen = application_id or _settings().discord.application_id
    if chosen is None:
        _fail(
            "give the application id: --application-id, or PREPBOT_DISCORD__APPLICATION_ID "
            "(Developer Portal → your application → General Information)"
        )
    _say(invite_url(chosen))


@app.command("doctor")
def doctor() -> None:
    """Check settings, database, content and platform credentials; say how to fix problems."""
    import asyncio

    from prepbot.doctor import diagnose

    findings = asyncio.run(diagnose(_settings()))
    for finding in findings:
        _say(finding.line())
    if not all(f.ok for f in findings):
        raise typer.Exit(1)
