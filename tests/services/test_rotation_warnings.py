"""A group is told when its filters match few scenarios, and once per cycle when few are left."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from prepbot.app import App
from prepbot.core.clock import ManualClock
from prepbot.core.events import Invocation, Place
from prepbot.core.rotation import FEW_LEFT, FEW_MATCHING, matching
from prepbot.core.text import status_lines
from prepbot.core.views import MemberRef, Notice, StatusView
from prepbot.store.models import Subscription
from tests.fakes import RecordingPlatform

MONDAY = date(2026, 11, 30)
ADMIN = MemberRef("ada", "Ada")


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(datetime(2026, 11, 30, 8, 0, tzinfo=UTC))


def place() -> Place:
    return Place("fake", "T1", "C1", "Acme", "c1")


async def prep(app: App, text: str) -> object:
    response = await app.services.commands.handle(Invocation(place(), ADMIN, True, text))
    return response.views[0]


def narrow_topic(app: App) -> tuple[str, int]:
    """Return a topic of the bank that matches fewer than FEW_MATCHING scenarios, and its count."""
    catalog = app.services.ctx.catalog
    counts = {topic: len(matching(catalog.scenarios, [topic], [])) for topic in catalog.topics}
    topic, count = min(
        ((t, n) for t, n in counts.items() if FEW_LEFT < n < FEW_MATCHING),
        key=lambda item: (item[1], item[0]),
    )
    return topic, count


async def test_a_narrow_filter_is_warned_about_at_once_with_its_count(app: App):
    topic, count = narrow_topic(app)
    subscribed = await prep(app, f"subscribe 09:00 UTC daily {topic}")
    assert isinstance(subscribed, Notice)
    assert f"Only {count} scenarios match this group's topics" in subscribed.text
    assert f"questions repeat every {count} rounds" in subscribed.text
    widened = await prep(app, "schedule all")
    assert isinstance(widened, Notice)
    assert "Only" not in widened.text  # the whole bank is plenty
    narrowed = await prep(app, f"schedule {topic}")
    assert isinstance(narrowed, Notice)
    assert f"Only {count} scenarios match" in narrowed.text


async def test_the_channel_is_told_once_per_cycle_when_few_questions_are_left(
    app: App, platform: RecordingPlatform
):
    topic, count = narrow_topic(app)
    await prep(app, f"subscribe 09:00 UTC daily {topic}")
    subscription = await app.services.admin.subscription(place())
    assert isinstance(subscription, Subscription)
    for day in range(2 * count):
        outcome = await app.services.rounds.post_round(subscription.id, MONDAY + timedelta(day))
        assert outcome is not None
    cards = [card for _, card in platform.questions]
    assert len(cards) == 2 * count
    warned = [
        (n, card.rotation_left) for n, card in enumerate(cards) if card.rotation_left is not None
    ]
    # Once per cycle: on the round after which FEW_LEFT - 1 scenarios remain unused.
    assert warned == [(count - FEW_LEFT, FEW_LEFT - 1), (2 * count - FEW_LEFT, FEW_LEFT - 1)]
    assert [c.scenario_id for c in cards[:count]] != [
        c.scenario_id for c in cards[count:]
    ] or count == 1
    assert sorted(c.scenario_id for c in cards[:count]) == sorted(
        s.id for s in app.services.rounds.eligible(subscription)
    )


async def test_status_warns_the_admin_when_the_rotation_runs_low(
    app: App, platform: RecordingPlatform
):
    topic, count = narrow_topic(app)
    await prep(app, f"subscribe 09:00 UTC daily {topic}")
    subscription = await app.services.admin.subscription(place())
    assert subscription is not None
    for day in range(count - FEW_LEFT + 1):
        await app.services.rounds.post_round(subscription.id, MONDAY + timedelta(day))
    status = await prep(app, "status")
    assert isinstance(status, StatusView)
    labels = dict(status_lines(status))
    assert "⚠ Small bank" in labels
    assert f"Only {count} scenarios match" in labels["⚠ Small bank"]
