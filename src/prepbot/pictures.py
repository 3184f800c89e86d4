"""Pictures: the weekly digest and a member's streak calendar as PNG, drawn in-process with Pillow.

This module owns how those two pictures look: their layout, colours and text. It turns the
frozen views of ``prepbot.core.views`` into PNG bytes and imports nothing else of prepbot: no
chat platform library, no database, no services; only Pillow and the views. Drawing uses only
Pillow's bundled font (no system font is guaranteed), loaded per picture, so rendering keeps no
shared mutable state and is safe to run in worker threads. The same view gives the same bytes.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from io import BytesIO

from PIL import Image, ImageDraw, ImageFont

from prepbot.core.views import (
    CALENDAR_WEEKS,
    LATE,
    MISSED,
    ON_TIME,
    OPEN,
    PICTURE_MEMBERS,
    DigestCard,
    DigestMember,
    StreakView,
    calendar_start,
)

Colour = tuple[int, int, int]
Swatch = tuple[Colour, Colour | None]  # a cell's fill and its outline (None: none)

BACKGROUND: Colour = (255, 255, 255)
INK: Colour = (31, 35, 40)
MUTED: Colour = (101, 109, 118)
RULE: Colour = (216, 222, 228)
TRACK: Colour = (243, 245, 247)  # behind a participation bar: the scale's full length

ON_TIME_COLOUR: Colour = (45, 164, 78)
LATE_COLOUR: Colour = (212, 167, 44)
POINTS_COLOUR: Colour = (130, 80, 223)
MISSED_COLOUR: Colour = (222, 118, 108)
OPEN_OUTLINE: Colour = (87, 96, 106)  # an open round: an outlined, empty cell
NO_ROUND_COLOUR: Colour = (235, 237, 240)
NOBODY_COLOUR: Colour = (247, 190, 184)  # a group's round that nobody answered on time
SHADES: tuple[Colour, ...] = ((172, 230, 180), (105, 200, 125), (48, 161, 78), (27, 100, 50))
"""A group's round days, lightest (fewest on-time answers) to darkest (the most)."""

MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
WEEKDAYS = ((0, "Mon"), (2, "Wed"), (4, "Fri"))
ELLIPSIS = "…"
LATIN = str.maketrans(  # letters that do not decompose into the font's glyphs: 'Ørsted': 'Orsted'
    {"Ø": "O", "ø": "o", "Æ": "AE", "æ": "ae", "Œ": "OE", "œ": "oe", "ß": "ss", "Ł": "L", "ł": "l"}
    | {"Đ": "D", "đ": "d", "Þ": "Th", "þ": "th", "\u0131": "i"}
)
DASHES = "\u2010\u2011\u2012\u2013\u2014\u2015\u2212"  # drawn as a hyphen when the font lacks them


@dataclass(frozen=True)
class Grid:
    """Where a calendar sits in its picture: the first cell's corner, a cell's size and the gap."""

    left: int
    top: int
    cell: int
    gap: int

    @property
    def pitch(self) -> int:
        """Return the distance from one cell to the next, across or down."""
        return self.cell + self.gap

    @property
    def right(self) -> int:
        """Return the x just past the last column."""
        return self.left + CALENDAR_WEEKS * self.pitch - self.gap

    @property
    def bottom(self) -> int:
        """Return the y just past the last row (Sunday)."""
        return self.top + 7 * self.pitch - self.gap


# The digest: a header, participation on the left, the group's calendar on the right, a footer.
DIGEST_WIDTH = 1200
MARGIN = 40
HEADER_RULE = 118
PANEL_TOP = 140
NAME_WIDTH = 170
BAR_LEFT = MARGIN + NAME_WIDTH + 12
BAR_WIDTH = 290
ANSWERS_RIGHT = 585
POINTS_RIGHT = 650
ROWS_TOP = 206
ROW_PITCH = 38
BAR_HEIGHT = 18
POINTS_BAR_HEIGHT = 5
DIGEST_GRID = Grid(left=734, top=202, cell=28, gap=6)
FOOTER_HEIGHT = 72

# A member's streak calendar.
STREAK_WIDTH = 700
STREAK_GRID = Grid(left=88, top=140, cell=40, gap=7)


def cell_origin(grid: Grid, first: date, day: date) -> tuple[int, int]:
    """Return the top-left corner of ``day``'s cell in a calendar starting on Monday ``first``."""
    column = (day - first).days // 7
    return grid.left + column * grid.pitch, grid.top + day.weekday() * grid.pitch


def cell_centre(grid: Grid, first: date, day: date) -> tuple[int, int]:
    """Return the centre of ``day``'s cell in a calendar starting on Monday ``first``."""
    x, y = cell_origin(grid, first, day)
    return x + grid.cell // 2, y + grid.cell // 2


def member_band(index: int) -> tuple[int, int]:
    """Return the top and bottom y of the digest's participation row ``index`` (0: the first)."""
    top = ROWS_TOP + index * ROW_PITCH
    return top, top + ROW_PITCH


def group_shade(count: int, most: int) -> Colour:
    """Return a group's round day colour: NOBODY_COLOUR at 0, darker as ``count`` nears ``most``."""
    if count <= 0 or most <= 0:
        return NOBODY_COLOUR
    level = -(-min(count, most) * len(SHADES) // most)  # ceiling: any answer shows
    return SHADES[max(level, 1) - 1]


def render_digest(card: DigestCard) -> bytes:
    """Return the weekly digest's picture as PNG bytes: participation and points per member, and the group's streak calendar."""  # noqa: E501
    members = card.participation[:PICTURE_MEMBERS]
    left_bottom = ROWS_TOP + max(len(members), 1) * ROW_PITCH
    right_bottom = DIGEST_GRID.bottom + 80  # the legend's two lines
    height = max(left_bottom, right_bottom) + FOOTER_HEIGHT
    image = Image.new("RGB", (DIGEST_WIDTH, height), BACKGROUND)
    pen = _Pen(image)

    head = card.group or "Study group"
    tail = f"week of {_period(card.period_start, card.period_end)}"
    pen.dashed((MARGIN, 60), head, tail, 30, INK, DIGEST_WIDTH - 2 * MARGIN)
    rounds = len(card.rounds)
    pen.text(
        (MARGIN, 96),
        f"{_many(card.answers, 'answer')} from {_many(card.members, 'member')} "
        f"across {_many(rounds, 'round')}",
        18,
        MUTED,
        anchor="ls",
        width=DIGEST_WIDTH - 2 * MARGIN,
    )
    pen.draw.line((MARGIN, HEADER_RULE, DIGEST_WIDTH - MARGIN, HEADER_RULE), fill=RULE, width=1)

    _participation(pen, members)
    _group_calendar(pen, card)
    _footer(pen, height, DIGEST_WIDTH, _period(card.period_start, card.period_end))
    return _png(image)


def render_streak_calendar(view: StreakView) -> bytes:
    """Return a member's streak calendar as PNG bytes (GitHub-style: on time, late, missed, open)."""  # noqa: E501
    if view.today is None:
        raise ValueError("no calendar to draw")
    today = view.today
    first = calendar_start(today)
    height = STREAK_GRID.bottom + 64 + FOOTER_HEIGHT
    image = Image.new("RGB", (STREAK_WIDTH, height), BACKGROUND)
    pen = _Pen(image)

    tail = f"streak {_count(view.current)} (best {_count(view.best)})"
    pen.dashed((MARGIN, 56), view.member.name or "Member", tail, 28, INK, STREAK_WIDTH - 2 * MARGIN)
    line = f"{_count(view.on_time)} on time · {_count(view.late)} late"
    if view.pending:
        line += f" · {_count(view.pending)} waiting for a reveal"
    pen.text((MARGIN, 90), line, 18, MUTED, anchor="ls", width=STREAK_WIDTH - 2 * MARGIN)

    states = dict(view.calendar)

    def swatch(day: date) -> Swatch:
        """Return the colour of a day of the member's calendar."""
        state = states.get(day)
        if state == ON_TIME:
            return ON_TIME_COLOUR, None
        if state == LATE:
            return LATE_COLOUR, None
        if state == MISSED:
            return MISSED_COLOUR, None
        if state == OPEN:
            return BACKGROUND, OPEN_OUTLINE
        return NO_ROUND_COLOUR, None

    _calendar(pen, STREAK_GRID, first, today, swatch, label_size=15)
    _legend(
        pen,
        (STREAK_GRID.left, STREAK_GRID.bottom + 34),
        (
            ((ON_TIME_COLOUR, None), "on time"),
            ((LATE_COLOUR, None), "late"),
            ((MISSED_COLOUR, None), "missed"),
            ((BACKGROUND, OPEN_OUTLINE), "open"),
            ((NO_ROUND_COLOUR, None), "no round"),
        ),
        size=15,
    )
    _footer(pen, height, STREAK_WIDTH, f"{CALENDAR_WEEKS} weeks to {_day(today)}")
    return _png(image)


def _participation(pen: _Pen, members: Sequence[DigestMember]) -> None:
    """Draw the left panel: a row per member, a bar of answers on time and late, and points."""
    pen.text((MARGIN, PANEL_TOP), "Participation", 19, INK)
    legend_y = PANEL_TOP + 44
    _legend(
        pen,
        (BAR_LEFT, legend_y),
        (
            ((ON_TIME_COLOUR, None), "on time"),
            ((LATE_COLOUR, None), "late"),
            ((POINTS_COLOUR, None), "key points"),
        ),
        size=14,
        swatch_size=12,
    )
    pen.text((ANSWERS_RIGHT, legend_y), "answers", 14, MUTED, anchor="rm")
    pen.text((POINTS_RIGHT, legend_y), "points", 14, MUTED, anchor="rm")
    if not members:
        pen.text(
            (MARGIN, ROWS_TOP + ROW_PITCH // 2), "No answers this week", 17, MUTED, anchor="lm"
        )
        return
    most_answers = max(max(m.on_time, 0) + max(m.late, 0) for m in members)
    most_points = max(max(m.points, 0) for m in members)
    for index, member in enumerate(members):
        top, _ = member_band(index)
        bar_top = top + 6
        middle = bar_top + BAR_HEIGHT // 2
        pen.text((MARGIN, middle), member.member.name, 16, INK, anchor="lm", width=NAME_WIDTH)
        pen.draw.rectangle(
            (BAR_LEFT, bar_top, BAR_LEFT + BAR_WIDTH - 1, bar_top + BAR_HEIGHT - 1), fill=TRACK
        )
        on_time, late = max(member.on_time, 0), max(member.late, 0)
        on_time_width = _bar(on_time, most_answers)
        late_width = _bar(on_time + late, most_answers) - on_time_width
        if late and late_width < 2:
            late_width = 2  # a late answer shows, even beside a huge on-time count
            on_time_width = min(on_time_width, BAR_WIDTH - late_width)
        _span(pen, BAR_LEFT, bar_top, on_time_width, BAR_HEIGHT, ON_TIME_COLOUR)
        _span(pen, BAR_LEFT + on_time_width, bar_top, late_width, BAR_HEIGHT, LATE_COLOUR)
        points = max(member.points, 0)
        points_top = bar_top + BAR_HEIGHT + 3
        _span(
            pen, BAR_LEFT, points_top, _bar(points, most_points), POINTS_BAR_HEIGHT, POINTS_COLOUR
        )
        pen.text((ANSWERS_RIGHT, middle), _count(on_time + late), 16, INK, anchor="rm", width=68)
        pen.text((POINTS_RIGHT, middle), _count(points), 16, POINTS_COLOUR, anchor="rm", width=58)


def _group_calendar(pen: _Pen, card: DigestCard) -> None:
    """Draw the right panel: the group's rounds over CALENDAR_WEEKS weeks, by on-time answers."""
    grid = DIGEST_GRID
    panel_left = grid.left - 44
    pen.text((panel_left, PANEL_TOP), "Group calendar", 19, INK)
    pen.text(
        (panel_left + pen.width("Group calendar", 19) + 10, PANEL_TOP + 3),
        "· on-time answers per round",
        15,
        MUTED,
        width=DIGEST_WIDTH - MARGIN - panel_left - 160,
    )
    first = calendar_start(card.period_end)
    counts: dict[date, int] = {}
    for day, count in card.calendar:
        counts[day] = counts.get(day, 0) + max(count, 0)
    last = first + timedelta(weeks=CALENDAR_WEEKS) - timedelta(days=1)
    most = max((c for d, c in counts.items() if first <= d <= last), default=0)

    def swatch(day: date) -> Swatch:
        """Return the colour of a day of the group's calendar."""
        if day not in counts:
            return NO_ROUND_COLOUR, None
        return group_shade(counts[day], most), None

    _calendar(pen, grid, first, card.period_end, swatch, label_size=13)
    y = grid.bottom + 28
    pen.text((grid.left, y), "fewer", 13, MUTED, anchor="lm")
    x = grid.left + round(pen.width("fewer", 13)) + 8
    for shade in SHADES:
        pen.draw.rounded_rectangle((x, y - 6, x + 11, y + 5), radius=2, fill=shade)
        x += 16
    pen.text((x + 2, y), "more on time", 13, MUTED, anchor="lm")
    _legend(
        pen,
        (grid.left, y + 26),
        (((NOBODY_COLOUR, None), "nobody on time"), ((NO_ROUND_COLOUR, None), "no round")),
        size=13,
        swatch_size=12,
    )


def _calendar(
    pen: _Pen,
    grid: Grid,
    first: date,
    last: date,
    swatch: Callable[[date], Swatch],
    *,
    label_size: int,
) -> None:
    """Draw a calendar's month and weekday labels and its cells from ``first`` to ``last``."""
    for row, name in WEEKDAYS:
        y = grid.top + row * grid.pitch + grid.cell // 2
        pen.text((grid.left - 8, y), name, label_size, MUTED, anchor="rm")
    labels: list[tuple[int, str]] = []
    for column in range(CALENDAR_WEEKS):
        monday = first + timedelta(weeks=column)
        days = [monday + timedelta(days=n) for n in range(7)]
        starts = [d for d in days if d.day == 1]
        if column == 0:
            labels.append((0, MONTHS[monday.month - 1]))
        elif starts:
            labels.append((column, MONTHS[starts[0].month - 1]))
    if len(labels) > 1 and labels[1][0] < 3:
        labels.pop(0)  # the first month barely shows: name the next one, not both
    for column, name in labels:
        pen.text((grid.left + column * grid.pitch, grid.top - 10), name, label_size, MUTED, "ls")
    radius = max(grid.cell // 7, 2)
    day = first
    end = min(last, first + timedelta(weeks=CALENDAR_WEEKS) - timedelta(days=1))
    while day <= end:
        x, y = cell_origin(grid, first, day)
        fill, outline = swatch(day)
        box = (x, y, x + grid.cell - 1, y + grid.cell - 1)
        width = 2 if outline else 0
        pen.draw.rounded_rectangle(box, radius=radius, fill=fill, outline=outline, width=width)
        day += timedelta(days=1)


def _legend(
    pen: _Pen,
    xy: tuple[int, int],
    items: Sequence[tuple[Swatch, str]],
    *,
    size: int,
    swatch_size: int = 14,
) -> int:
    """Draw swatches with their labels in a line centred on ``xy``'s y; return the x past them."""
    x, y = xy
    half = swatch_size // 2
    for (fill, outline), label in items:
        box = (x, y - half, x + swatch_size - 1, y - half + swatch_size - 1)
        width = 2 if outline else 0
        pen.draw.rounded_rectangle(box, radius=2, fill=fill, outline=outline, width=width)
        x += swatch_size + 6
        pen.text((x, y), label, size, MUTED, anchor="lm")
        x += int(pen.width(label, size)) + 18
    return x


def _footer(pen: _Pen, height: int, width: int, period: str) -> None:
    """Draw the footer: a rule, 'prepbot' on the left and the period on the right."""
    rule = height - FOOTER_HEIGHT + 22
    pen.draw.line((MARGIN, rule, width - MARGIN, rule), fill=RULE, width=1)
    middle = rule + (height - rule) // 2
    pen.text((MARGIN, middle), "prepbot", 15, INK, anchor="lm")
    pen.text((width - MARGIN, middle), period, 15, MUTED, anchor="rm", width=width // 2)


def _span(pen: _Pen, x: int, y: int, width: int, height: int, colour: Colour) -> None:
    """Fill a bar segment; a zero-wide one draws nothing."""
    if width > 0:
        pen.draw.rectangle((x, y, x + width - 1, y + height - 1), fill=colour)


def _bar(value: int, most: int) -> int:
    """Return a bar's width in pixels, scaled to ``most``; any value above 0 shows."""
    if value <= 0 or most <= 0:
        return 0
    return max(round(BAR_WIDTH * min(value, most) / most), 2)


def _count(n: int) -> str:
    """Return a count short enough for a narrow column: 1,234 or 12.3k or 4.5M."""
    if abs(n) < 100_000:
        return f"{n:,}"
    for step, unit in ((10**3, "k"), (10**6, "M"), (10**9, "B"), (10**12, "T")):
        if round(abs(n) / step, 1) < 1000:
            return f"{n / step:.1f}{unit}"
    return f"{n:.1e}"


def _many(n: int, noun: str) -> str:
    """Return '1 answer' or '3 answers'."""
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def _day(day: date) -> str:
    """Return a date as 'May 12, 2024', whatever the locale."""
    return f"{MONTHS[day.month - 1]} {day.day}, {day.year}"


def _period(start: date, end: date) -> str:
    """Return 'May 6 to May 12, 2024' (the start's year only when it differs)."""
    head = f"{MONTHS[start.month - 1]} {start.day}"
    if start.year != end.year:
        head += f", {start.year}"
    return f"{head} to {_day(end)}"


def _png(image: Image.Image) -> bytes:
    """Return the picture encoded as PNG, with no metadata (the same picture, the same bytes).

    zlib's default level, not ``optimize``: on a 1200x586 digest that took 71 ms of the 82 ms
    a picture cost, against 25 ms now, for 3.5% more bytes (36.7 KB -> 38.0 KB), and each study
    group's weekly digest draws one in the scheduler's tick.
    """
    out = BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


Font = ImageFont.FreeTypeFont


class _Pen:
    """Draw text on one picture, with fonts loaded for it alone (no state shared across threads)."""

    def __init__(self, image: Image.Image) -> None:
        self.draw = ImageDraw.Draw(image)
        self._fonts: dict[int, Font] = {}
        self._glyphs: dict[str, bool] = {}
        self._missing: bytes | None = None

    def font(self, size: int) -> Font:
        """Return Pillow's bundled font at ``size`` pixels."""
        if size not in self._fonts:
            font = ImageFont.load_default(size=size)
            if not isinstance(font, ImageFont.FreeTypeFont):
                raise RuntimeError("Pillow was built without FreeType: no font to draw with")
            self._fonts[size] = font
        return self._fonts[size]

    def width(self, text: str, size: int) -> float:
        """Return the width ``text`` takes at ``size``."""
        return self.font(size).getlength(self.clean(text))

    def text(
        self,
        xy: tuple[float, float],
        text: str,
        size: int,
        fill: Colour,
        anchor: str = "la",
        *,
        width: float | None = None,
    ) -> None:
        """Draw one line of text, cut with an ellipsis to ``width`` pixels when given."""
        line = self.clean(text)
        if width is not None:
            line = self.fit(line, size, width)
        if line:
            self.draw.text(xy, line, font=self.font(size), fill=fill, anchor=anchor)

    def dashed(
        self, xy: tuple[int, int], head: str, tail: str, size: int, fill: Colour, width: int
    ) -> None:
        """Draw 'head — tail' on a baseline, cutting the head to fit (the font has no dash)."""
        font = self.font(size)
        head, tail = self.clean(head), self.fit(self.clean(tail), size, width * 0.6)
        gap, dash = round(size * 0.3), round(size * 0.8)
        tail_width = font.getlength(tail)
        head = self.fit(head, size, width - tail_width - 2 * gap - dash)
        x, y = xy
        self.draw.text((x, y), head, font=font, fill=fill, anchor="ls")
        x += round(font.getlength(head)) + gap
        thickness = max(size // 14, 2)
        middle = y - round(size * 0.28)
        self.draw.rectangle((x, middle - thickness // 2, x + dash - 1, middle + 0), fill=fill)
        x += dash + gap
        self.draw.text((x, y), tail, font=font, fill=fill, anchor="ls")

    def fit(self, text: str, size: int, width: float) -> str:
        """Return ``text``, or its longest start that fits ``width`` with an ellipsis."""
        font = self.font(size)
        if font.getlength(text) <= width:
            return text
        low, high = 0, len(text)  # text[:low] + ELLIPSIS fits; text[:high] + ELLIPSIS does not
        if font.getlength(ELLIPSIS) > width:
            return ""
        while high - low > 1:
            middle = (low + high) // 2
            if font.getlength(text[:middle].rstrip() + ELLIPSIS) <= width:
                low = middle
            else:
                high = middle
        return text[:low].rstrip() + ELLIPSIS

    def clean(self, text: str) -> str:
        """Return ``text`` drawable: one line, and accents the font lacks dropped ('Zoë': 'Zoe')."""
        out: list[str] = []
        for char in text:
            if char in "\t\n\r\v\f":
                out.append(" ")
            elif unicodedata.category(char).startswith("C"):
                continue  # controls, format marks, surrogates: nothing to draw
            elif self.has_glyph(char):
                out.append(char)
            elif char in DASHES:
                out.append("-")
            elif char.translate(LATIN) != char:
                out.append(char.translate(LATIN))
            else:
                plain = "".join(
                    c for c in unicodedata.normalize("NFKD", char) if not unicodedata.combining(c)
                )
                usable = plain and all(self.has_glyph(c) for c in plain)
                out.append(plain if usable else char)  # else the font's empty box: still a mark
        return "".join(out)

    def has_glyph(self, char: str) -> bool:
        """Return whether the bundled font draws ``char`` (rather than its 'missing' box)."""
        if " " <= char <= "~":
            return True
        if char not in self._glyphs:
            font = self.font(16)
            if self._missing is None:
                self._missing = bytes(font.getmask("\U0010fffd"))
            self._glyphs[char] = bytes(font.getmask(char)) != self._missing
        return self._glyphs[char]
