"""The one retry helper: attempts counted, waits doubling to a bound, jittered below it, slept by the caller's sleep."""

from __future__ import annotations

from fanout.retry import attempts


def test_attempts_wait_before_every_attempt_but_the_first_doubling_up_to_the_bound() -> None:
    waits: list[float] = []
    assert list(attempts(6, first_wait=0.5, most_wait=3.0, sleep=waits.append, jitter=False)) == [0, 1, 2, 3, 4, 5]
    assert waits == [0.5, 1.0, 2.0, 3.0, 3.0]


def test_jittered_waits_stay_below_their_bound() -> None:
    waits: list[float] = []
    for _ in attempts(5, first_wait=0.1, most_wait=0.3, sleep=waits.append):
        pass
    assert len(waits) == 4
    assert all(0 <= wait <= bound for wait, bound in zip(waits, [0.1, 0.2, 0.3, 0.3], strict=True))


def test_a_loop_that_succeeds_stops_waiting() -> None:
    waits: list[float] = []
    for attempt in attempts(10, first_wait=1.0, most_wait=1.0, sleep=waits.append, jitter=False):
        if attempt == 2:
            break
    assert waits == [1.0, 1.0]
