"""Rotation: no repeats until every eligible scenario was used; same order on every replica."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from prepbot.core.rotation import next_pick

ids = st.lists(st.from_regex(r"[a-z]{1,6}", fullmatch=True), min_size=1, max_size=30, unique=True)


def play(seed: str, eligible: list[str], rounds: int) -> list[tuple[str, int]]:
    history: list[tuple[str, int]] = []
    cycle = 0
    for _ in range(rounds):
        used = {s for s, c in history if c == cycle}
        pick = next_pick(seed, eligible, cycle, used)
        assert pick is not None
        history.append((pick.scenario_id, pick.cycle))
        cycle = pick.cycle
    return history


@given(seed=st.text(max_size=10), eligible=ids, extra=st.integers(0, 40))
def test_no_repeat_until_every_scenario_was_used(seed: str, eligible: list[str], extra: int):
    history = play(seed, eligible, len(eligible) * 2 + extra)
    n = len(eligible)
    for start in range(0, len(history) - n + 1, n):
        window = [s for s, _ in history[start : start + n]]
        assert sorted(window) == sorted(eligible)


@given(seed=st.text(max_size=10), eligible=ids)
def test_the_order_is_deterministic_for_a_subscription(seed: str, eligible: list[str]):
    assert play(seed, eligible, len(eligible)) == play(
        seed, list(reversed(eligible)), len(eligible)
    )


@given(seed=st.text(max_size=10), eligible=ids, new=st.from_regex(r"[A-Z]{3}", fullmatch=True))
def test_a_new_scenario_joins_the_current_cycle(seed: str, eligible: list[str], new: str):
    half = play(seed, eligible, len(eligible) // 2 + 1)
    cycle = half[-1][1]
    used = {s for s, c in half if c == cycle}
    grown = [*eligible, new]
    remaining = [s for s in grown if s not in used]
    picks = []
    for _ in range(len(remaining)):
        pick = next_pick(seed, grown, cycle, used)
        assert pick is not None
        assert pick.cycle == cycle
        picks.append(pick.scenario_id)
        used.add(pick.scenario_id)
    assert sorted(picks) == sorted(remaining)


def test_different_subscriptions_get_different_orders():
    eligible = [f"s{i}" for i in range(19)]
    assert play("channel-a", eligible, 19) != play("channel-b", eligible, 19)


def test_nothing_eligible_means_no_pick():
    assert next_pick("seed", [], 0, set()) is None
