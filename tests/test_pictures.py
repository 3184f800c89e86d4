"""The digest picture and the streak calendar: real PNGs, with what a reader would see in them."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import date, timedelta
from io import BytesIO

import pytest
from PIL import Image

from prepbot.core.views import (
    CALENDAR_WEEKS,
    LATE,
    MISSED,
    ON_TIME,
    OPEN,
    PICTURE_MEMBERS,
    DigestCard,
    DigestMember,
    DigestRound,
    MemberRef,
    StreakView,
    calendar_start,
)
from prepbot.pictures import (
    BACKGROUND,
    BAR_LEFT,
    BAR_WIDTH,
    DIGEST_GRID,
    LATE_COLOUR,
    MARGIN,
    MISSED_COLOUR,
    NAME_WIDTH,
    NO_ROUND_COLOUR,
    NOBODY_COLOUR,
    ON_TIME_COLOUR,
    OPEN_OUTLINE,
    POINTS_COLOUR,
    SHADES,
    STREAK_GRID,
    cell_centre,
    cell_origin,
    group_shade,
    member_band,
    render_digest,
    render_streak_calendar,
)

END = date(2024, 5, 12)  # a Sunday
START = END - timedelta(days=6)
FIRST = calendar_start(END)


def member(name: str, on_time: int, late: int = 0, points: int = 0) -> DigestMember:
    return DigestMember(MemberRef(name.lower()[:8] or "x", name), on_time, late, points, streak=1)


def digest(
    participation: tuple[DigestMember, ...] = (),
    calendar: tuple[tuple[date, int], ...] = (),
    *,
    group: str = "ml-prep",
    rounds: int = 5,
) -> DigestCard:
    return DigestCard(
        group=group,
        period_start=START,
        period_end=END,
        rounds=tuple(
            DigestRound(START + timedelta(days=n), f"s{n}", f"Scenario {n}", None, 3, 1)
            for n in range(rounds)
        ),
        members=len(participation),
        answers=sum(m.on_time + m.late for m in participation),
        participation=participation,
        calendar=calendar,
    )


def busy_week() -> DigestCard:
    return digest(
        (
            member("Ada Lovelace", 9, 1, 30),
            member("Grace Hopper", 5, 3, 21),
            member("Alan Turing", 2, 0, 6),
        ),
        tuple((START + timedelta(days=n), 3 + n) for n in range(5)),
    )


def decode(png: bytes) -> Image.Image:
    image = Image.open(BytesIO(png))
    assert image.format == "PNG"
    return image.convert("RGB")


def colour_at(image: Image.Image, xy: tuple[int, int]) -> tuple[int, ...]:
    pixel = image.getpixel(xy)
    assert isinstance(pixel, tuple)
    return pixel


def count_colour(
    image: Image.Image, box: tuple[int, int, int, int], colour: tuple[int, ...]
) -> int:
    return colours(image.crop(box)).get(colour, 0)


def colours(image: Image.Image) -> dict[tuple[int, ...], int]:
    """Return how many pixels have each colour (getcolors: the same in every Pillow)."""
    found = image.getcolors(maxcolors=image.width * image.height) or []
    return {colour: count for count, colour in found if isinstance(colour, tuple)}


def luminance(colour: tuple[int, ...]) -> float:
    red, green, blue = colour[:3]
    return 0.2126 * red + 0.7152 * green + 0.0722 * blue


def test_the_digest_is_a_real_readable_png():
    png = render_digest(busy_week())
    image = decode(png)
    assert image.width >= 800
    assert image.height >= 300
    assert 5_000 <= len(png) <= 1_000_000
    assert len(colours(image)) >= 5
    assert image.getpixel((2, 2)) == BACKGROUND  # its own opaque background, dark mode or not
    assert Image.open(BytesIO(png)).mode in {"RGB", "P"}  # no transparency to vanish into


def test_the_member_with_more_answers_has_the_longer_on_time_bar():
    image = decode(render_digest(busy_week()))
    bars = []
    for index in range(3):
        top, bottom = member_band(index)
        box = (BAR_LEFT, top, BAR_LEFT + BAR_WIDTH, bottom)
        bars.append(count_colour(image, box, ON_TIME_COLOUR))
    assert bars[0] > bars[1] > bars[2] > 0


def test_late_answers_and_points_have_their_own_bars():
    image = decode(render_digest(busy_week()))
    top, bottom = member_band(1)  # Grace: 3 late
    box = (BAR_LEFT, top, BAR_LEFT + BAR_WIDTH, bottom)
    assert count_colour(image, box, LATE_COLOUR) > 0
    assert count_colour(image, box, POINTS_COLOUR) > 0
    top, bottom = member_band(2)  # Alan: none late
    assert count_colour(image, (BAR_LEFT, top, BAR_LEFT + BAR_WIDTH, bottom), LATE_COLOUR) == 0


def test_the_busiest_member_fills_the_bar_scale():
    image = decode(render_digest(busy_week()))
    top, bottom = member_band(0)  # Ada: 9 + 1, the most in the card
    box = (BAR_LEFT, top, BAR_LEFT + BAR_WIDTH, bottom)
    filled = count_colour(image, box, ON_TIME_COLOUR) + count_colour(image, box, LATE_COLOUR)
    top, bottom = member_band(1)  # Grace: 5 + 3
    box = (BAR_LEFT, top, BAR_LEFT + BAR_WIDTH, bottom)
    less = count_colour(image, box, ON_TIME_COLOUR) + count_colour(image, box, LATE_COLOUR)
    assert filled == pytest.approx(less * 10 / 8, rel=0.02)


def test_a_long_name_is_cut_before_the_bars():
    card = digest((member("W" * 200, 3, 1, 5),))
    image = decode(render_digest(card))
    top, bottom = member_band(0)
    gutter = (MARGIN + NAME_WIDTH + 1, top, BAR_LEFT, bottom)
    assert count_colour(image, gutter, BACKGROUND) == (gutter[2] - gutter[0]) * (bottom - top)
    name_column = (MARGIN, top, MARGIN + NAME_WIDTH, bottom)
    assert count_colour(image, name_column, BACKGROUND) < (NAME_WIDTH * (bottom - top))


def test_a_round_with_more_on_time_answers_is_darker():
    busy, quiet, nobody = START, START + timedelta(days=1), START + timedelta(days=2)
    card = digest(calendar=((busy, 12), (quiet, 2), (nobody, 0)))
    image = decode(render_digest(card))
    dark = colour_at(image, cell_centre(DIGEST_GRID, FIRST, busy))
    light = colour_at(image, cell_centre(DIGEST_GRID, FIRST, quiet))
    assert dark in SHADES
    assert light in SHADES
    assert luminance(dark) < luminance(light)
    assert colour_at(image, cell_centre(DIGEST_GRID, FIRST, nobody)) == NOBODY_COLOUR
    no_round = START + timedelta(days=3)
    assert colour_at(image, cell_centre(DIGEST_GRID, FIRST, no_round)) == NO_ROUND_COLOUR


def test_the_group_calendar_spans_its_weeks_and_ends_with_the_period():
    oldest = FIRST
    card = digest(calendar=((oldest, 4), (END, 4)))
    image = decode(render_digest(card))
    assert colour_at(image, cell_centre(DIGEST_GRID, FIRST, oldest)) == SHADES[-1]
    assert colour_at(image, cell_centre(DIGEST_GRID, FIRST, END)) == SHADES[-1]
    x, _ = cell_origin(DIGEST_GRID, FIRST, END)
    assert x == DIGEST_GRID.left + (CALENDAR_WEEKS - 1) * DIGEST_GRID.pitch
    assert DIGEST_GRID.right < image.width


def test_shades_deepen_with_the_count():
    levels = [group_shade(count, 20) for count in range(21)]
    assert levels[0] == NOBODY_COLOUR
    assert set(levels[1:]) == set(SHADES)
    brightness = [luminance(colour) for colour in levels[1:]]
    assert brightness == sorted(brightness, reverse=True)


def test_the_same_card_gives_the_same_bytes():
    assert render_digest(busy_week()) == render_digest(busy_week())
    view = streak_view(((START, ON_TIME),))
    assert render_streak_calendar(view) == render_streak_calendar(view)


def test_pictures_drawn_in_threads_match_those_drawn_alone():
    cards = [busy_week(), digest(), digest((member("Zoë", 1),), group="x" * 200)]
    alone = [render_digest(card) for card in cards]
    with ThreadPoolExecutor(max_workers=6) as pool:
        together = list(pool.map(render_digest, cards * 4))
    assert together == alone * 4


def test_an_empty_week_renders_and_differs_from_a_busy_one():
    empty = render_digest(digest(rounds=0))
    image = decode(empty)
    assert image.height >= 300
    assert empty != render_digest(busy_week())
    top, bottom = member_band(0)
    assert count_colour(image, (BAR_LEFT, top, BAR_LEFT + BAR_WIDTH, bottom), ON_TIME_COLOUR) == 0
    assert count_colour(image, (MARGIN, top, BAR_LEFT, bottom), BACKGROUND) < (
        (BAR_LEFT - MARGIN) * (bottom - top)
    )  # something is written where the members would be: "No answers this week"


@pytest.mark.parametrize(
    "card",
    [
        pytest.param(digest(), id="nothing"),
        pytest.param(digest(rounds=0, calendar=()), id="no-rounds"),
        pytest.param(digest((member("Ada", 0, 0, 0), member("Bob", 0, 0, 0))), id="zeros"),
        pytest.param(digest(calendar=((START, 0), (END, 0))), id="nobody-on-time"),
        pytest.param(
            digest(tuple(member("N" * 200 + str(n), 10**12, 10**9, 10**15) for n in range(12))),
            id="huge-and-long",
        ),
        pytest.param(
            digest(
                (
                    member("李明", 3, 1, 2),
                    member("Zoë Ørsted", 2),
                    member("محمد", 1),
                    member("🦄 Unicorn", 1),
                    member("tab\tnew\nline\x00\u200d\ud800", 1),
                    member("", 1),
                ),
                group="учебная группа 📚",
            ),
            id="non-latin",
        ),
        pytest.param(digest(group="g" * 200), id="long-group"),
        pytest.param(
            digest(calendar=((FIRST - timedelta(days=30), 5), (END + timedelta(days=9), 5))),
            id="calendar-outside-window",
        ),
        pytest.param(
            digest(tuple(member(f"member {n}", n, n, n) for n in range(40))), id="too-many"
        ),
    ],
)
def test_any_valid_card_renders(card: DigestCard):
    image = decode(render_digest(card))
    assert image.width >= 800
    assert 300 <= image.height <= 1_000


def test_too_many_members_are_cut_to_the_picture_limit():
    crowd = tuple(member(f"member {n}", 40 - n) for n in range(40))
    tall = decode(render_digest(digest(crowd)))
    limit = decode(render_digest(digest(crowd[:PICTURE_MEMBERS])))
    assert tall.size == limit.size


def streak_view(
    calendar: tuple[tuple[date, str], ...], today: date | None = END, name: str = "Grace Hopper"
) -> StreakView:
    return StreakView(
        member=MemberRef("u1", name),
        current=4,
        best=9,
        on_time=31,
        late=6,
        calendar=calendar,
        today=today,
    )


def test_the_streak_calendar_colours_each_day_by_what_the_member_did():
    on_time, late, missed, open_ = (START + timedelta(days=n) for n in range(4))
    no_round = START + timedelta(days=4)
    view = streak_view(((on_time, ON_TIME), (late, LATE), (missed, MISSED), (open_, OPEN)))
    png = render_streak_calendar(view)
    image = decode(png)
    assert 500 <= image.width <= 900
    assert 5_000 <= len(png) <= 1_000_000

    def at(day: date) -> tuple[int, ...]:
        return colour_at(image, cell_centre(STREAK_GRID, FIRST, day))

    assert at(on_time) == ON_TIME_COLOUR
    assert at(late) == LATE_COLOUR
    assert at(missed) == MISSED_COLOUR
    assert at(no_round) == NO_ROUND_COLOUR
    assert at(open_) == BACKGROUND  # an open round is an outline around nothing yet
    x, y = cell_origin(STREAK_GRID, FIRST, open_)
    assert colour_at(image, (x + STREAK_GRID.cell // 2, y)) == OPEN_OUTLINE
    assert len({ON_TIME_COLOUR, LATE_COLOUR, MISSED_COLOUR, NO_ROUND_COLOUR, BACKGROUND}) == 5


def test_the_streak_calendar_ends_with_today():
    today = START + timedelta(days=2)  # a Wednesday: the rest of its week is still to come
    view = streak_view(((FIRST, ON_TIME), (today, LATE)), today=today)
    image = decode(render_streak_calendar(view))
    first = calendar_start(today)
    assert first == FIRST
    assert colour_at(image, cell_centre(STREAK_GRID, first, FIRST)) == ON_TIME_COLOUR
    assert colour_at(image, cell_centre(STREAK_GRID, first, today)) == LATE_COLOUR
    tomorrow = today + timedelta(days=1)
    assert colour_at(image, cell_centre(STREAK_GRID, first, tomorrow)) == BACKGROUND


def test_a_streak_calendar_without_a_today_is_refused():
    with pytest.raises(ValueError, match="no calendar to draw"):
        render_streak_calendar(streak_view((), today=None))


@pytest.mark.parametrize("name", ["", "李明", "N" * 200, "Zoë\n\x00\ud800", "🔥🔥🔥"])
def test_any_member_name_renders(name: str):
    view = streak_view(
        ((FIRST - timedelta(days=3), ON_TIME), (END + timedelta(days=3), LATE), (START, "odd")),
        name=name,
    )
    image = decode(render_streak_calendar(view))
    assert colour_at(image, cell_centre(STREAK_GRID, FIRST, START)) == NO_ROUND_COLOUR


def test_an_empty_streak_calendar_renders():
    image = decode(render_streak_calendar(streak_view(())))
    assert colour_at(image, cell_centre(STREAK_GRID, FIRST, FIRST)) == NO_ROUND_COLOUR
