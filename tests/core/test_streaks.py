"""Streaks count rounds answered on time in a row; the best one is kept."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from prepbot.core.streaks import StreakState, milestone_reached, streak_of


def runs_of_true(outcomes: list[bool]) -> list[int]:
    runs, current = [0], 0
    for on_time in outcomes:
        current = current + 1 if on_time else 0
        runs.append(current)
    return runs


@given(st.lists(st.booleans(), max_size=200))
def test_current_is_the_trailing_run_and_best_the_longest(outcomes: list[bool]):
    state = streak_of(outcomes)
    runs = runs_of_true(outcomes)
    assert state.current == runs[-1]
    assert state.best == max(runs)


@given(st.lists(st.booleans(), max_size=100), st.lists(st.booleans(), max_size=100))
def test_streaks_can_be_computed_incrementally(first: list[bool], second: list[bool]):
    state = streak_of(first)
    for on_time in second:
        state = state.after_round(on_time)
    assert state == streak_of(first + second)


def test_a_missed_round_resets_the_current_streak_but_keeps_the_best():
    assert streak_of([True, True, True, False]) == StreakState(current=0, best=3)
    assert streak_of([True, False, True]) == StreakState(current=1, best=1)


def test_milestones_fire_once_when_crossed():
    assert milestone_reached(2, 3) == 3
    assert milestone_reached(3, 4) is None
    assert milestone_reached(9, 10) == 10
