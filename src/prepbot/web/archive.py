"""A study group's read-only web archive: its rounds, leaderboards and members' streak calendars.

Owns the ``/archive/<token>`` pages that ``prepbot run`` serves beside /healthz: it reads the
group behind a secret token, builds plain HTML (``html.escape``, a little inline CSS, no
JavaScript) and an SVG calendar per member, and never writes to the database. A round's answers
appear only once it is revealed; a wrong or rotated token gets the same short 404 as a group
that does not exist. Imports no chat platform library (neither ``slack_bolt`` nor ``discord``).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from html import escape
from typing import TYPE_CHECKING, Any

from sqlalchemy import case, func, select

from prepbot.core.commands import Period
from prepbot.core.views import (
    CALENDAR_WEEKS,
    LATE,
    MISSED,
    NO_ROUND,
    ON_TIME,
    OPEN,
    LeaderboardView,
    MemberRef,
    StreakView,
    calendar_start,
)
from prepbot.services.base import local_today
from prepbot.services.queries import member_calendar
from prepbot.store.models import (
    Answer,
    AnswerGrade,
    Community,
    Member,
    Round,
    RoundStatus,
    Subscription,
)
from prepbot.web.links import thread_url

if TYPE_CHECKING:
    from prepbot.services import Services

TOKEN_SHAPE = re.compile(r"[A-Za-z0-9_-]{16,64}")
ROUNDS_PER_PAGE = 30
SHOWN_ROUNDS = (RoundStatus.POSTED, RoundStatus.REVEALED)
HEADERS = {
    # The token is the only key: no search engine, no cache, no Referer to a thread link.
    "X-Robots-Tag": "noindex, nofollow",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "private, no-store",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src data:",
    "X-Content-Type-Options": "nosniff",
}

# What a day of a member's calendar can be (core.views), with its colour and legend.
DAY_STYLES = {
    ON_TIME: ("#2da44e", "answered on time"),
    LATE: ("#d4a72c", "answered late"),
    MISSED: ("#f4b6bd", "missed"),
    OPEN: ("#9ec5fe", "open (not revealed yet)"),
    NO_ROUND: ("#ebedf0", "no round"),
}

STYLE = """
*{box-sizing:border-box}
body{margin:0;font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;
color:#1f2328;background:#f6f8fa}
main{max-width:860px;margin:0 auto;padding:16px}
header h1{margin:.2em 0;font-size:1.6em}
nav a{margin-right:1em}
a{color:#0969da}
.muted{color:#59636e;font-size:.92em}
section{margin:1.6em 0}
h2{font-size:1.25em;border-bottom:1px solid #d1d9e0;padding-bottom:.2em}
.cards{display:flex;flex-wrap:wrap;gap:12px}
.card{background:#fff;border:1px solid #d1d9e0;border-radius:8px;padding:12px;
flex:1 1 240px;min-width:0}
.card.stat{flex:1 1 120px}
table{border-collapse:collapse;width:100%;font-size:.92em}
th,td{text-align:left;padding:3px 6px;border-bottom:1px solid #eef0f2}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
article{background:#fff;border:1px solid #d1d9e0;border-radius:8px;padding:12px 14px;
margin:12px 0}
article h3{margin:0 0 .2em;font-size:1.1em}
h4{margin:.9em 0 .3em;font-size:.95em}
ul{margin:.3em 0;padding-left:1.3em}
.answer{border-left:3px solid #2da44e;padding:2px 10px;margin:8px 0}
.answer.late{border-color:#d4a72c}
.answer p{margin:.2em 0;white-space:pre-wrap;overflow-wrap:anywhere}
.tag{display:inline-block;font-size:.78em;border-radius:10px;padding:0 8px;
background:#eef0f2;color:#59636e}
.tag.open{background:#ddf4ff;color:#0969da}
.bar{display:flex;align-items:center;gap:8px;font-size:.9em;margin:3px 0}
.bar span.fill{display:inline-block;height:10px;background:#2da44e;border-radius:3px}
.bar span.rest{display:inline-block;height:10px;background:#ebedf0;border-radius:3px}
.bar .label{flex:1;min-width:0}
.note{background:#ddf4ff;border-radius:6px;padding:6px 10px}
svg{max-width:100%;height:auto}
"""


@dataclass
class RoundEntry:
    """One round of the archive, with what may be shown of it."""

    round: Round
    title: str
    link: str | None
    revealed: bool
    on_time: int = 0
    late: int = 0
    answers: list[tuple[str, str, bool]] = field(default_factory=list)  # name, text, on time
    insights: Sequence[str] = ()
    question: Sequence[str] = ()
    coverage: list[tuple[str, int]] = field(default_factory=list)  # key point, answers making it
    graded: int = 0


@dataclass
class Group:
    """The study group a token opens, and the community it belongs to."""

    subscription: Subscription
    community: Community

    @property
    def name(self) -> str:
        """Return the group's name as members know it: its channel."""
        sub = self.subscription
        return f"#{sub.channel_name or sub.channel_id}"


class ArchivePages:
    """Serve and build the archive pages of every group that has a link."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.ctx = services.ctx

    def register(self, app: Any) -> None:
        """Add the archive's routes to an aiohttp application."""
        app.router.add_get("/archive/{token}", self._group_route)
        app.router.add_get("/archive/{token}/", self._group_route)
        app.router.add_get("/archive/{token}/member/{member}", self._member_route)

    async def _group_route(self, request: Any) -> Any:
        before = _parse_date(request.query.get("before"))
        return _respond(await self.group_page(request.match_info["token"], before))

    async def _member_route(self, request: Any) -> Any:
        page = await self.member_page(request.match_info["token"], request.match_info["member"])
        return _respond(page)

    async def group(self, token: str) -> Group | None:
        """Return the group whose archive link holds ``token``, or None."""
        if not TOKEN_SHAPE.fullmatch(token):
            return None
        async with self.ctx.db.transaction() as session:
            found = (
                await session.execute(
                    select(Subscription, Community)
                    .join(Community, Community.id == Subscription.community_id)
                    .where(Subscription.archive_token == token)
                )
            ).first()
        return Group(found[0], found[1]) if found is not None else None

    # The group's page

    async def group_page(self, token: str, before: date | None = None) -> str | None:
        """Return the HTML of a group's archive (rounds before ``before``), or None (404)."""
        group = await self.group(token)
        if group is None:
            return None
        sub = group.subscription
        today = local_today(self.ctx, sub)
        entries, older = await self.rounds(group, before)
        boards = [
            await self.services.queries.leaderboard([sub], group.name, period, today)
            for period in (Period.WEEK, Period.MONTH, Period.ALL)
        ]
        members = await self.members(sub)
        base = f"/archive/{escape(token)}"
        body = [
            "<header>",
            f"<h1>{escape(group.name)}</h1>",
            f'<p class="muted">{escape(group.community.name or group.community.platform)} · '
            f"study group archive · {escape(today.strftime('%a %d %b %Y'))}</p>",
            '<nav><a href="#rounds">Rounds</a><a href="#coverage">Coverage</a>'
            '<a href="#leaderboards">Leaderboards</a><a href="#members">Members</a></nav>',
            "</header>",
            _rounds_section(entries, base, older),
            _coverage_section(entries),
            _leaderboards_section(boards),
            _members_section(members, base),
        ]
        return _page(f"{group.name} — prepbot archive", "\n".join(body))

    async def rounds(
        self, group: Group, before: date | None
    ) -> tuple[list[RoundEntry], date | None]:
        """Return a page of the group's rounds, newest first, and the date to page on (or None)."""
        sub = group.subscription
        query = (
            select(Round)
            .where(Round.subscription_id == sub.id, Round.status.in_(SHOWN_ROUNDS))
            .order_by(Round.local_date.desc())
            .limit(ROUNDS_PER_PAGE + 1)
        )
        if before is not None:
            query = query.where(Round.local_date < before)
        async with self.ctx.db.transaction() as session:
            rounds = list((await session.scalars(query)).all())
            older = rounds[ROUNDS_PER_PAGE].local_date if len(rounds) > ROUNDS_PER_PAGE else None
            rounds = rounds[:ROUNDS_PER_PAGE]
            ids = [r.id for r in rounds]
            revealed = [r.id for r in rounds if r.status == RoundStatus.REVEALED]
            counts = (
                await session.execute(
                    select(Answer.round_id, Answer.on_time, func.count())
                    .where(Answer.round_id.in_(ids))
                    .group_by(Answer.round_id, Answer.on_time)
                )
            ).all()
            answers = (
                await session.execute(
                    select(Answer.round_id, Member.display_name, Answer.text, Answer.on_time)
                    .join(Member, Member.id == Answer.member_id)
                    .where(Answer.round_id.in_(revealed))  # never an open round's answers
                    .order_by(Answer.round_id, Answer.on_time.desc(), Answer.first_reply_at)
                )
            ).all()
            grades = (
                await session.execute(
                    select(AnswerGrade.round_id, AnswerGrade.covered).where(
                        AnswerGrade.round_id.in_(revealed)
                    )
                )
            ).all()
        tallies: dict[tuple[int, bool], int] = {(r, bool(t)): int(n) for r, t, n in counts}
        by_round: dict[int, list[tuple[str, str, bool]]] = defaultdict(list)
        for round_id, name, text, on_time in answers:
            by_round[round_id].append((name, text, bool(on_time)))
        covered: dict[int, list[list[str]]] = defaultdict(list)
        for round_id, points in grades:
            covered[round_id].append(list(points or []))
        entries = []
        for round_ in rounds:
            scenario = self.ctx.catalog.get(round_.scenario_id)
            is_revealed = round_.status == RoundStatus.REVEALED
            entry = RoundEntry(
                round=round_,
                title=scenario.title if scenario is not None else round_.scenario_id,
                link=thread_url(
                    group.community.platform,
                    group.community.external_id,
                    sub.channel_id,
                    round_.question_message_id,
                ),
                revealed=is_revealed,
                on_time=tallies.get((round_.id, True), 0),
                late=tallies.get((round_.id, False), 0),
            )
            if scenario is not None:
                entry.question = scenario.prompts
                if is_revealed:
                    entry.insights = scenario.insights
            if is_revealed:
                entry.answers = by_round.get(round_.id, [])
                if scenario is not None and scenario.rubric is not None:
                    made = covered.get(round_.id, [])
                    entry.graded = len(made)
                    entry.coverage = [
                        (p.point, sum(p.id in ids for ids in made))
                        for p in scenario.rubric.key_points
                    ]
            entries.append(entry)
        return entries, older

    async def members(self, sub: Subscription) -> list[tuple[str, str, int, int]]:
        """Return who answered in the group: (external id, name, on time, late), most first."""
        on_time = func.sum(case((Answer.on_time.is_(True), 1), else_=0))
        total = func.count(Answer.id)
        query = (
            select(Member.external_id, Member.display_name, on_time, total)
            .join(Answer, Answer.member_id == Member.id)
            .join(Round, Round.id == Answer.round_id)
            .where(Round.subscription_id == sub.id, Round.status == RoundStatus.REVEALED)
            .group_by(Member.id, Member.external_id, Member.display_name)
            .order_by(total.desc(), func.lower(Member.display_name))
        )
        async with self.ctx.db.transaction() as session:
            found = (await session.execute(query)).all()
        return [(e, n, int(t or 0), int(a or 0) - int(t or 0)) for e, n, t, a in found]

    # A member's page

    async def member_page(self, token: str, external_id: str) -> str | None:
        """Return a member's page (streak, calendar) in a group, or None (404)."""
        group = await self.group(token)
        if group is None:
            return None
        sub = group.subscription
        async with self.ctx.db.transaction() as session:
            member = await session.scalar(
                select(Member).where(
                    Member.community_id == sub.community_id, Member.external_id == external_id
                )
            )
            answered = member is not None and await session.scalar(
                select(func.count())
                .select_from(Answer)
                .join(Round, Round.id == Answer.round_id)
                .where(Answer.member_id == member.id, Round.subscription_id == sub.id)
            )
        if member is None or not answered:  # only the group's own members have a page here
            return None
        ref = MemberRef(member.external_id, member.display_name)
        streak = await self.services.queries.streak(sub, ref)
        assert isinstance(streak, StreakView)
        today = local_today(self.ctx, sub)
        days = await self.calendar(sub, member.id, today)
        base = f"/archive/{escape(token)}"
        body = [
            "<header>",
            f'<p class="muted"><a href="{base}">← {escape(group.name)}</a></p>',
            f"<h1>{escape(member.display_name)}</h1>",
            f'<p class="muted">in {escape(group.name)} · {escape(group.community.name)}</p>',
            "</header>",
            '<section><div class="cards">',
            _stat("Current streak", streak.current),
            _stat("Best streak", streak.best),
            _stat("On time", streak.on_time),
            _stat("Late", streak.late),
            "</div></section>",
            f"<section><h2>The last {CALENDAR_WEEKS} weeks</h2>",
            streak_calendar_svg(days, today),
            _legend(),
            "</section>",
        ]
        return _page(f"{member.display_name} — {group.name} — prepbot archive", "\n".join(body))

    async def calendar(
        self, sub: Subscription, member_id: int, today: date
    ) -> dict[date, tuple[str, str]]:
        """Return, for each day with a round in the calendar's weeks, (state, round title)."""
        async with self.ctx.db.transaction() as session:
            days = await member_calendar(session, sub.id, member_id, today)
        return {
            day: (state, scenario.title if (scenario := self.ctx.catalog.get(sid)) else sid)
            for day, (state, sid) in days.items()
        }


CELL, GAP, LEFT, TOP = 14, 3, 30, 18


def streak_calendar_svg(days: dict[date, tuple[str, str]], today: date) -> str:
    """Return a GitHub-style calendar as inline SVG: a column per week, a row per weekday.

    ``days`` maps a date to (state, round title); a day missing from it had no round. Days
    after ``today`` are left blank.
    """
    first = calendar_start(today)
    width = LEFT + CALENDAR_WEEKS * (CELL + GAP)
    height = TOP + 7 * (CELL + GAP)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" style="width:100%;max-width:{2 * width}px" '
        'role="img" aria-label="Streak calendar">',
        '<g font-size="10" fill="#59636e" font-family="system-ui,sans-serif">',
    ]
    for row, label in ((0, "Mon"), (2, "Wed"), (4, "Fri"), (6, "Sun")):
        y = TOP + row * (CELL + GAP) + CELL - 3
        parts.append(f'<text x="0" y="{y}">{label}</text>')
    month = None
    for week in range(CALENDAR_WEEKS):
        monday = first + timedelta(weeks=week)
        if monday.month != month:
            month = monday.month
            x = LEFT + week * (CELL + GAP)
            parts.append(f'<text x="{x}" y="11">{monday:%b}</text>')
    parts.append("</g>")
    for week in range(CALENDAR_WEEKS):
        for weekday in range(7):
            day = first + timedelta(weeks=week, days=weekday)
            if day > today:
                continue
            state, title = days.get(day, (NO_ROUND, ""))
            colour, words = DAY_STYLES[state]
            x = LEFT + week * (CELL + GAP)
            y = TOP + weekday * (CELL + GAP)
            what = f"{day:%a %d %b %Y}: {words}" + (f" — {title}" if title else "")
            parts.append(
                f'<rect x="{x}" y="{y}" width="{CELL}" height="{CELL}" rx="3" '
                f'fill="{colour}" class="{state}"><title>{escape(what)}</title></rect>'
            )
    parts.append("</svg>")
    return "".join(parts)


def _legend() -> str:
    items = []
    for colour, words in DAY_STYLES.values():
        swatch = (
            f'<svg width="12" height="12" viewBox="0 0 12 12" aria-hidden="true">'
            f'<rect width="12" height="12" rx="2" fill="{colour}"/></svg>'
        )
        items.append(f"<span>{swatch} {escape(words)}</span>")
    return f'<p class="muted">{" &nbsp; ".join(items)}</p>'


def _stat(label: str, value: int) -> str:
    return (
        f'<div class="card stat"><div class="muted">{escape(label)}</div>'
        f'<div style="font-size:1.6em;font-weight:600">{value:,}</div></div>'
    )


def _rounds_section(entries: list[RoundEntry], base: str, older: date | None) -> str:
    parts = ['<section id="rounds"><h2>Rounds</h2>']
    if not entries:
        parts.append('<p class="muted">No rounds yet.</p>')
    for entry in entries:
        parts.append(_round_article(entry))
    if older is not None:
        before = (older + timedelta(days=1)).isoformat()
        parts.append(f'<p><a href="{base}?before={before}">Older rounds →</a></p>')
    parts.append("</section>")
    return "\n".join(parts)


def _round_article(entry: RoundEntry) -> str:
    day = entry.round.local_date
    title = escape(entry.title)
    heading = f'<a href="{escape(entry.link)}">{title}</a>' if entry.link else title
    state = (
        '<span class="tag">revealed</span>'
        if entry.revealed
        else '<span class="tag open">open</span>'
    )
    answered = f"{entry.on_time} on time" + (f", {entry.late} late" if entry.late else "")
    parts = [
        f'<article id="round-{day.isoformat()}">',
        f"<h3>{heading}</h3>",
        f'<p class="muted">{day:%a %d %b %Y} · {state} · {answered}</p>',
    ]
    if entry.question:
        parts.append(f"<p>{escape(entry.question[0])}</p>")
    if not entry.revealed:
        parts.append('<p class="note">Answers appear after the reveal.</p>')
        parts.append("</article>")
        return "\n".join(parts)
    if entry.insights:
        parts.append("<h4>Key insights</h4><ul>")
        parts.extend(f"<li>{escape(i)}</li>" for i in entry.insights)
        parts.append("</ul>")
    if entry.graded and entry.coverage:
        parts.append(f"<h4>What the group covered ({entry.graded} graded answers)</h4>")
        parts.extend(_bar(point, made, entry.graded) for point, made in entry.coverage)
    parts.append(f"<h4>Answers ({len(entry.answers)})</h4>")
    if not entry.answers:
        parts.append('<p class="muted">Nobody answered.</p>')
    for name, text, on_time in entry.answers:
        late = "" if on_time else ' <span class="tag">late</span>'
        shown = escape(text) if text.strip() else '<span class="muted">(text no longer kept)</span>'
        parts.append(
            f'<div class="answer{"" if on_time else " late"}"><b>{escape(name)}</b>{late}'
            f"<p>{shown}</p></div>"
        )
    parts.append("</article>")
    return "\n".join(parts)


def _bar(label: str, made: int, out_of: int) -> str:
    share = round(100 * made / out_of) if out_of else 0
    return (
        f'<div class="bar"><span class="label">{escape(label)}</span>'
        f'<span><span class="fill" style="width:{share * 0.8:.0f}px"></span>'
        f'<span class="rest" style="width:{(100 - share) * 0.8:.0f}px"></span></span>'
        f'<span class="muted">{made}/{out_of}</span></div>'
    )


def _coverage_section(entries: list[RoundEntry]) -> str:
    parts = [
        '<section id="coverage"><h2>Coverage</h2>',
        '<table><tr><th>Date</th><th>Question</th><th class="n">On time</th>'
        '<th class="n">Late</th></tr>',
    ]
    for entry in entries:
        day = entry.round.local_date
        parts.append(
            f'<tr><td>{day:%d %b}</td><td><a href="#round-{day.isoformat()}">'
            f"{escape(entry.title)}</a></td>"
            f'<td class="n">{entry.on_time}</td><td class="n">{entry.late}</td></tr>'
        )
    parts.append("</table></section>")
    return "\n".join(parts)


def _leaderboards_section(boards: Iterable[LeaderboardView]) -> str:
    parts = ['<section id="leaderboards"><h2>Leaderboards</h2><div class="cards">']
    for board in boards:
        parts.append(f'<div class="card"><b>{escape(board.period.capitalize())}</b>')
        if not board.rows:
            parts.append('<p class="muted">Nobody yet.</p></div>')
            continue
        parts.append(
            '<table><tr><th class="n">#</th><th>Member</th><th class="n">On time</th>'
            '<th class="n">Points</th><th class="n">Streak</th></tr>'
        )
        for row in board.rows[:10]:
            parts.append(
                f'<tr><td class="n">{row.rank}</td><td>{escape(row.member.name)}</td>'
                f'<td class="n">{row.on_time}</td><td class="n">{row.points}</td>'
                f'<td class="n">{row.streak}</td></tr>'
            )
        parts.append("</table></div>")
    parts.append("</div></section>")
    return "\n".join(parts)


def _members_section(members: list[tuple[str, str, int, int]], base: str) -> str:
    parts = ['<section id="members"><h2>Members</h2>']
    if not members:
        parts.append('<p class="muted">Nobody has answered yet.</p>')
    else:
        parts.append("<ul>")
        for external_id, name, on_time, late in members:
            href = f"{base}/member/{escape(external_id, quote=True)}"
            parts.append(
                f'<li><a href="{href}">{escape(name)}</a> '
                f'<span class="muted">{on_time} on time, {late} late</span></li>'
            )
        parts.append("</ul>")
    parts.append("</section>")
    return "\n".join(parts)


def _page(title: str, body: str) -> str:
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="robots" content="noindex, nofollow">'
        f"<title>{escape(title)}</title><style>{STYLE}</style></head>"
        f"<body><main>\n{body}\n</main></body></html>\n"
    )


NOT_FOUND = _page(
    "Not found",
    "<h1>Not found</h1><p>There is no archive at this address. Ask in your study group for "
    "the current link (<code>/prep archive</code>).</p>",
)


def _respond(page: str | None) -> Any:
    from aiohttp import web

    if page is None:
        return web.Response(
            text=NOT_FOUND, status=404, content_type="text/html", charset="utf-8", headers=HEADERS
        )
    return web.Response(text=page, content_type="text/html", charset="utf-8", headers=HEADERS)


def _parse_date(text: str | None) -> date | None:
    try:
        return date.fromisoformat(text) if text else None
    except ValueError:
        return None
