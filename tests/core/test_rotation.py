"""Rotation: no repeats until every eligible scenario was used; same order on every replica."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from prepbot.core.rotation import Candidate, next_pick

ids = st.lists(st.from_regex(r"[a-z]{1,6}", fullmatch=True), min_size=1, max_size=30, unique=True)


def play(seed: str, eligible: list[str], rounds: int) -> list[tuple[str, int]]:
    return play_bank(seed, [Candidate(s) for s in eligible], rounds)


def play_bank(seed: str, eligible: list[Candidate], rounds: int) -> list[tuple[str, int]]:
    by_id = {c.id: c for c in eligible}
    history: list[tuple[str, int]] = []
    cycle = 0
    for _ in range(rounds):
        used = {s for s, c in history if c == cycle}
        recent = [by_id[s] for s, _ in reversed(history[-3:])]
        pick = next_pick(seed, eligible, cycle, used, recent)
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
        pick = next_pick(seed, [Candidate(s) for s in grown], cycle, used)
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


@given(
    seed=st.text(max_size=10),
    eligible=st.lists(
        st.from_regex(r"[a-z]{1,6}", fullmatch=True), min_size=2, max_size=12, unique=True
    ),
)
def test_a_group_never_gets_the_same_question_twice_in_a_row(seed: str, eligible: list[str]):
    history = [s for s, _ in play(seed, eligible, len(eligible) * 3)]
    assert all(a != b for a, b in itertools.pairwise(history))


def test_a_pick_says_how_many_unused_scenarios_remain_in_its_cycle():
    eligible = [Candidate(s) for s in ("a", "b", "c")]
    assert next_pick("s", eligible, 0, set()).left_after == 2  # type: ignore[union-attr]
    assert next_pick("s", eligible, 0, {"a", "b"}).left_after == 0  # type: ignore[union-attr]
    starts_over = next_pick("s", eligible, 0, {"a", "b", "c"})
    assert starts_over is not None
    assert (starts_over.cycle, starts_over.left_after) == (1, 2)


def shared_topic_share(order: list[str], by_id: dict[str, Candidate]) -> float:
    pairs = list(itertools.pairwise(order))
    return sum(1 for a, b in pairs if by_id[a].topics & by_id[b].topics) / len(pairs)


def test_the_built_in_bank_rotation_mixes_topics_and_difficulties():
    """A group's days alternate areas: far fewer back-to-back topics than a plain shuffle."""
    from prepbot.content.loader import builtin_pack_path, load_packs
    from prepbot.core.rotation import matching, rank

    bank = [s.scenario for s in load_packs([builtin_pack_path()]).scenarios]
    eligible = [Candidate.of(s) for s in matching(bank, [], [])]
    by_id = {c.id: c for c in eligible}
    for seed in ("team-a", "team-b", "team-c"):
        mixed = [s for s, _ in play_bank(seed, eligible, len(eligible))]
        shuffled = sorted(by_id, key=lambda s: rank(seed, 0, s))  # the order before mixing
        assert sorted(mixed) == sorted(by_id)  # still every scenario once per cycle
        assert shared_topic_share(mixed, by_id) <= shared_topic_share(shuffled, by_id) / 2
        levels = [by_id[s].difficulty for s in mixed]
        triples = sum(1 for i in range(len(levels) - 2) if len(set(levels[i : i + 3])) == 1)
        assert triples <= len(levels) // 20, f"{triples} runs of three same-difficulty days"
