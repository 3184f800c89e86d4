"""The web archive of a simulated month: over HTTP, in headless Chromium, and its link command."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest

from prepbot.app import App
from prepbot.core.clock import ManualClock
from prepbot.core.commands import Archive, CommandError, parse_prep
from prepbot.core.events import Invocation, Place, ThreadReply
from prepbot.core.views import ErrorView, MemberRef, Notice, Response
from prepbot.observability import HealthServer
from prepbot.settings import HttpSettings
from prepbot.web.archive import ArchivePages
from prepbot.web.links import archive_url, thread_url
from tests.conftest import REPO
from tests.fakes import RecordingPlatform
from tests.test_data_export import GROUPS, START, simulate_month

GROUP = GROUPS[1]  # answers in threads
LAST_REVEALED = START + timedelta(days=29)
OPEN_DAY = START + timedelta(days=30)
OPEN_SECRET = "an answer to the open round, not to be shown yet"
SCREENSHOTS = REPO / "docs" / "screenshots"


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(datetime(2026, 11, 1, 12, 0, tzinfo=UTC))


def said(response: Response) -> str:
    return "\n".join(getattr(v, "text", "") for v in response.views)


async def prep(app: App, text: str, *, who: str = "ada", is_admin: bool = False) -> Response:
    return await app.services.commands.handle(
        Invocation(GROUP, MemberRef(who, who.title()), is_admin, text)
    )


def token_in(response: Response) -> str:
    found = re.search(r"/archive/([A-Za-z0-9_-]+)", said(response))
    assert found is not None, said(response)
    return found[1]


@dataclass
class Served:
    """A simulated month served on a free local port."""

    app: App
    base: str
    token: str
    open_title: str


@pytest.fixture
async def served(
    app: App, platform: RecordingPlatform, clock: ManualClock
) -> AsyncIterator[Served]:
    await simulate_month(app, clock)
    clock.set(datetime.combine(OPEN_DAY, datetime.min.time(), UTC) + timedelta(hours=9))
    subscription = await app.services.admin.subscription(GROUP)
    assert subscription is not None
    posted = await app.services.rounds.post_round(subscription.id, OPEN_DAY)
    assert posted is not None
    assert posted.round.question_message_id is not None
    thread = posted.round.question_message_id
    clock.advance(timedelta(minutes=5))
    await app.services.answers.record(
        ThreadReply(
            GROUP, thread, f"{thread}-ada", MemberRef("ada", "Ada"), OPEN_SECRET, clock.now()
        )
    )
    scenario = app.services.ctx.catalog.get(posted.round.scenario_id)
    assert scenario is not None
    response = await prep(app, "archive")
    assert response.private
    server = HealthServer(app.services.ctx.metrics, {}, pages=ArchivePages(app.services).register)
    await server.start("127.0.0.1", 0)
    try:
        yield Served(app, f"http://127.0.0.1:{server.port}", token_in(response), scenario.title)
    finally:
        await server.stop()


async def get(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.get(url) as reply:
        return reply.status, await reply.text()


async def test_the_archive_shows_revealed_answers_coverage_and_leaderboards(served: Served):
    status, page = await get(f"{served.base}/archive/{served.token}")
    assert status == 200
    assert '<meta name="viewport"' in page
    assert "<script" not in page
    assert page.index(served.open_title) < page.index("Key insights")  # newest first
    assert f"ada on {LAST_REVEALED}: calibration, then temperature scaling." in page
    assert "Late, but here." in page  # a late answer after a revealed round, marked late
    assert "Answers appear after the reveal." in page
    assert OPEN_SECRET not in page  # the open round's answers wait for its reveal
    assert "Coverage" in page
    assert "On time" in page
    for period in ("This week", "This month", "All time"):
        assert period in page
    assert "Leaderboards" in page
    assert "Ada" in page
    assert "Eve" in page
    assert "Older rounds" in page  # 31 rounds: 30 per page
    older = re.search(r'href="(/archive/[^"]+\?before=[0-9-]+)"', page)
    assert older is not None
    status, first_page = await get(served.base + older[1])
    assert status == 200
    assert f"{START:%a %d %b %Y}" in first_page


async def test_a_member_page_draws_the_streak_calendar(served: Served):
    status, page = await get(f"{served.base}/archive/{served.token}/member/ada")
    assert status == 200
    assert "<svg" in page
    assert "Ada" in page
    assert "Current streak" in page
    for state in ("on-time", "missed", "open"):
        assert f'class="{state}"' in page
    status, eve = await get(f"{served.base}/archive/{served.token}/member/eve")
    assert status == 200
    assert 'class="late"' in eve
    status, _ = await get(f"{served.base}/archive/{served.token}/member/nobody")
    assert status == 404


async def test_a_wrong_or_rotated_link_gets_404(served: Served):
    app = served.app
    not_found = await get(f"{served.base}/archive/{'x' * 32}")
    assert not_found[0] == 404
    assert "Not found" in not_found[1]
    assert (await get(f"{served.base}/archive/short"))[1] == not_found[1]  # no hint why
    assert (await get(f"{served.base}/archive/{'x' * 32}/member/ada"))[0] == 404
    again = await prep(app, "archive", who="bob")
    assert token_in(again) == served.token  # one link per group until it is rotated
    refused = await prep(app, "archive rotate")
    assert isinstance(refused.views[0], ErrorView)
    assert refused.private
    assert (await get(f"{served.base}/archive/{served.token}"))[0] == 200
    rotated = await prep(app, "archive rotate", who="root", is_admin=True)
    assert rotated.private
    assert "old one no longer works" in said(rotated)
    new = token_in(rotated)
    assert new != served.token
    assert (await get(f"{served.base}/archive/{served.token}"))[0] == 404
    assert (await get(f"{served.base}/archive/{served.token}/member/ada"))[0] == 404
    assert (await get(f"{served.base}/archive/{new}"))[0] == 200


async def test_prep_archive_lists_the_last_rounds(served: Served):
    response = await prep(served.app, "archive")
    assert isinstance(response.views[0], Notice)
    text = said(response)
    assert text.startswith(f"Archive: http://127.0.0.1:8080/archive/{served.token}")
    rounds = [line for line in text.splitlines() if line.startswith("• ")]
    assert len(rounds) == 5
    assert rounds[0].endswith("(open)")
    assert served.open_title in rounds[0]
    outside = Place("fake", "T1", "C-NONE", "Acme", "none")
    lost = await served.app.services.commands.handle(
        Invocation(outside, MemberRef("ada", "Ada"), False, "archive")
    )
    assert isinstance(lost.views[0], ErrorView)


def test_archive_commands_and_links_parse():
    assert parse_prep("archive") == Archive(rotate=False)
    assert parse_prep("archive ROTATE") == Archive(rotate=True)
    with pytest.raises(CommandError):
        parse_prep("archive everything")
    assert thread_url("slack", "T1", "C9", "1700000000.123456") == (
        "https://app.slack.com/archives/C9/p1700000000123456"
    )
    assert thread_url("discord", "1", "2", "3") == "https://discord.com/channels/1/2/3"
    assert thread_url("console", "c", "c", "m") is None
    assert archive_url("https://prep.example.com/", "abc") == "https://prep.example.com/archive/abc"
    assert HttpSettings().base_url() == "http://127.0.0.1:8080"
    assert HttpSettings(public_url="https://p.example/").base_url() == "https://p.example"


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed (.ci/run installs it)")
        pytest.skip("chromium is not installed: apt-get install -y chromium")
    return found


async def run_chromium(binary: str, profile: Path, *args: str) -> bytes:
    process = await asyncio.create_subprocess_exec(
        binary,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--no-proxy-server",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    out, _ = await asyncio.wait_for(process.communicate(), timeout=120)
    assert process.returncode == 0, f"chromium exited with {process.returncode}"
    return out


async def test_chromium_renders_the_archive(served: Served, tmp_path: Path):
    binary = chromium()
    url = f"{served.base}/archive/{served.token}"
    dom = (await run_chromium(binary, tmp_path / "profile", "--dump-dom", url)).decode()
    assert served.open_title in dom
    assert "Key insights" in dom
    assert OPEN_SECRET not in dom
    shots = {
        "archive.png": ("1100,1600", url),
        "archive-phone.png": ("390,1400", url),
        "archive-member.png": ("900,700", f"{url}/member/ada"),
    }
    keep = os.environ.get("PREPBOT_WRITE_SCREENSHOTS") == "1"
    for name, (size, address) in shots.items():
        path = tmp_path / name
        await run_chromium(
            binary, tmp_path / "profile", f"--screenshot={path}", f"--window-size={size}", address
        )
        assert path.is_file()
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert path.stat().st_size > 10_000, f"{name} looks empty"
        if keep and served.app.db.is_sqlite:
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, SCREENSHOTS / name)


def test_the_dates_are_as_the_simulation_says():
    assert date(2026, 12, 1) == LAST_REVEALED
    assert date(2026, 12, 2) == OPEN_DAY
