"""The scheduler fans out fairly: communities take turns, so none waits for another to finish."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from prepbot.app import App
from prepbot.core.clock import ManualClock
from prepbot.core.commands import Subscribe, parse_prep
from prepbot.core.events import Place
from prepbot.scheduling import RoundScheduler, fair_order
from tests.fakes import RecordingPlatform

MORNING = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
GROUPS = {"T1": 3, "T2": 3, "T3": 1}  # groups per community, subscribed community by community
TAKING_TURNS = ["T1-0", "T2-0", "T3-0", "T1-1", "T2-1", "T1-2", "T2-2"]


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(MORNING - timedelta(days=1))


def test_fair_order_takes_one_per_key_in_turn_and_keeps_each_keys_order():
    items = ["a1", "a2", "a3", "b1", "c1", "c2"]
    assert fair_order(items, key=lambda item: item[0]) == ["a1", "b1", "c1", "a2", "c2", "a3"]
    assert fair_order([], key=str) == []


async def test_posts_and_reveals_take_communities_in_turn(
    app: App, platform: RecordingPlatform, clock: ManualClock
):
    for team, count in GROUPS.items():
        for n in range(count):
            command = parse_prep("subscribe 09:00 UTC daily reveal=17:00")
            assert isinstance(command, Subscribe)
            await app.services.admin.subscribe(Place("fake", team, f"{team}-{n}"), command.change)
    scheduler = RoundScheduler(app.services, concurrency=1)  # one at a time: the order shows

    clock.set(MORNING)
    await scheduler.tick()
    assert [channel for channel, _ in platform.questions] == TAKING_TURNS

    clock.set(MORNING.replace(hour=17))
    await scheduler.tick()
    assert [channel for channel, _, _ in platform.reveals] == TAKING_TURNS
