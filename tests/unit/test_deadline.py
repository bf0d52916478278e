"""Work bounded by the time left: the fetcher starts a read or a sink's write only while it fits, and answers
the rest as unprocessed; it is never killed between two sinks' writes (fanout.deadline, fanout.pipeline.fetcher).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable

import pytest

from fanout.deadline import NO_DEADLINE, Deadline, Pace
from fanout.model.payloads import fetcher_event
from fanout.pipeline.fetcher import OUT_OF_TIME, FetchFailed
from tests.support.fakes import FakeContext, RecordingReject
from tests.support.world import World, change, fetcher_handler, row


class Countdown:
    """A deadline that answers each question with the next of ``lefts`` (seconds), then the last for ever."""

    def __init__(self, lefts: Iterable[float]) -> None:
        self._lefts = iter(lefts)
        self.last = 0.0
        self.asked = 0

    def left(self) -> float:
        self.asked += 1
        self.last = next(self._lefts, self.last)
        return self.last


class ContextWithTime(FakeContext):
    def __init__(self, remaining_ms: int) -> None:
        super().__init__()
        self.remaining_ms = remaining_ms

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


def test_out_of_time_before_the_sinks_the_change_is_retried_and_no_sink_is_written() -> None:
    # Given a post, and time for the read but not for the sinks' writes (written side by side, one step)
    world = World()
    world.source.set("posts", (1,), row(1, "first"), version=100)
    deadline = Countdown([30.0, 0.5])

    # When the fetcher applies its change
    with pytest.raises(FetchFailed) as failed:
        world.fetcher().apply([change(1)], deadline)

    # Then neither sink was called, and the key is answered as unprocessed (retried)
    report = failed.value.report
    assert world.titles(1) == (None, None)
    assert report.outcomes == []
    assert report.failed_keys == {("posts", (("id", 1),))}
    assert report.failures == [f"posts/1: {OUT_OF_TIME}"]
    assert deadline.asked == 2


def test_out_of_time_before_the_read_nothing_is_read_or_written() -> None:
    world = World()
    world.source.set("posts", (1,), row(1, "first"), version=100)

    with pytest.raises(FetchFailed) as failed:
        world.fetcher().apply([change(1), change(2)], Countdown([0.2]))

    assert world.titles(1) == (None, None) and world.source.reads == []
    assert failed.value.report.failed_keys == {("posts", (("id", 1),)), ("posts", (("id", 2),))}


def test_a_step_starts_only_while_twice_the_slowest_step_so_far_fits() -> None:
    pace = Pace(floor_seconds=1.0)
    assert pace.allows(Countdown([1.5])) and not pace.allows(Countdown([1.0]))
    pace.longest = 4.0
    assert not pace.allows(Countdown([7.9])) and pace.allows(Countdown([8.1]))


def test_with_time_enough_every_sink_is_written() -> None:
    world = World()
    world.source.set("posts", (1,), row(1, "first"), version=100)

    report = world.fetcher().apply([change(1)], Countdown(itertools.repeat(60.0)))

    assert world.titles(1) == ("first", "first") and not report.failures


def test_the_fetchers_entry_answers_what_did_not_fit_as_unprocessed() -> None:
    # Given a batch of two records and an invocation with less than the margin left
    world = World()
    world.source.set("posts", (1,), row(1, "first"), version=100)
    event = {
        "Records": [
            {"messageId": f"m{i}", "receiptHandle": f"r{i}", "body": json.dumps(fetcher_event([change(key)]))}
            for i, key in enumerate((1, 2))
        ]
    }

    # When the batch is handled
    answer = fetcher_handler(world.fetcher(RecordingReject()))(event, ContextWithTime(remaining_ms=2_500))

    # Then both records are answered for a retry, and nothing was written
    assert answer["batchItemFailures"] == [{"itemIdentifier": "m0"}, {"itemIdentifier": "m1"}]
    assert world.titles(1) == (None, None)


def test_the_deadline_of_a_context_keeps_the_margin_back_and_no_context_has_none() -> None:
    assert 6.0 < Deadline.of_context(ContextWithTime(10_000), margin_seconds=3.0).left() <= 7.0
    assert Deadline.of_context(object()) is NO_DEADLINE
