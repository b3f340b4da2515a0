"""The in-process request budget (web/moving_window.py) on a clock the test moves."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from limits import parse_many

from cartsync.web.moving_window import SWEEP_S, MovingWindow


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_full_window_refuses_until_its_oldest_hit_leaves() -> None:
    clock = Clock()
    window = MovingWindow(clock)
    five = parse_many("5/second")
    for _ in range(5):
        assert window.hit(five, ("alice",)) == 0
        clock.now += 0.1
    assert window.hit(five, ("alice",)) == pytest.approx(
        0.5
    )  # the first hit (t=1000.0) leaves at 1001.0
    assert window.hit(five, ("bob",)) == 0  # another identity has its own budget
    clock.now = 1001.0
    assert window.hit(five, ("alice",)) == 0


def test_a_refusal_by_one_limit_counts_in_none() -> None:
    clock = Clock()
    window = MovingWindow(clock)
    both = parse_many("2/second;3/minute")
    assert window.hit(both, ("a",)) == 0
    assert window.hit(both, ("a",)) == 0
    assert window.hit(both, ("a",)) > 0  # 2/second full
    clock.now += 1.0
    assert window.hit(both, ("a",)) == 0  # the refused one was not counted per minute
    clock.now += 1.0
    assert window.hit(both, ("a",)) == pytest.approx(
        58.0
    )  # 3/minute full since the first hit, at 1000.0


def test_idle_keys_are_swept() -> None:
    clock = Clock()
    window = MovingWindow(clock)
    one = parse_many("10/second")
    for who in range(100):
        window.hit(one, (str(who),))
    assert len(window) == 100
    clock.now += SWEEP_S + 0.01
    window.hit(one, ("late",))
    assert len(window) == 1


@given(
    st.lists(st.floats(0, 3, allow_nan=False), min_size=1, max_size=60),
    st.integers(1, 6),
)
def test_never_more_than_amount_in_any_window_and_refusals_are_honest(
    gaps: list[float], amount: int
) -> None:
    clock = Clock()
    window = MovingWindow(clock)
    items = parse_many(f"{amount}/2second")
    admitted: list[float] = []
    for gap in gaps:
        clock.now += gap
        recent = [t for t in admitted if t > clock.now - 2]
        wait = window.hit(items, ("x",))
        if wait == 0:
            assert len(recent) < amount
            admitted.append(clock.now)
        else:
            # Refused only when full, and told exactly when the oldest counted hit leaves.
            assert len(recent) == amount
            assert wait == pytest.approx(recent[0] + 2 - clock.now)
