"""The fetcher writes a table's rows to every sink at once, and reports a change only when every sink answered.

Each sink here wraps a real one (OpenSearchSink, DynamoDBSink over the in-memory fakes) and meets the others at
a barrier inside its write: the barrier opens only when every sink is writing at the same moment, so written one
after the other the first sink's wait breaks (a wait, not a timing: the test fails without the overlap).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from fanout.model.change import Change, Stage
from fanout.model.mapping import TableMapping
from fanout.pipeline.fetcher import Fetcher, FetchFailed
from fanout.sinks import Outcome, Sink
from fanout.source.rows import RowState
from tests.support.fakes import RecordingReject
from tests.support.world import World, row

WAIT_S = 1  # how long a sink waits for the others to be writing too


class Meeting:
    """A sink that writes only once every sink of the fetcher is inside its write."""

    def __init__(self, sink: Sink, barrier: threading.Barrier, log: list[str]) -> None:
        self.sink = sink
        self.name = sink.name
        self.barrier = barrier
        self.log = log

    def enabled_for(self, mapping: TableMapping) -> bool:
        return self.sink.enabled_for(mapping)

    def apply(self, mapping: TableMapping, change: Change, state: RowState) -> Outcome:
        raise NotImplementedError

    def apply_batch(self, mapping: TableMapping, items: Sequence[tuple[Change, RowState]]) -> list[Outcome | Exception]:
        self.barrier.wait(WAIT_S)  # BrokenBarrierError if the other sinks are not being written now
        outcomes = self.sink.apply_batch(mapping, items)
        self.log.append(self.name)
        return outcomes


class Refusing(Meeting):
    def apply_batch(self, mapping: TableMapping, items: Sequence[tuple[Change, RowState]]) -> list[Outcome | Exception]:
        self.barrier.wait(WAIT_S)
        self.log.append(self.name)
        return [RuntimeError("sink unavailable")] * len(items)


def posts(world: World, *ids: int) -> list[Change]:
    for i in ids:
        world.source.set("posts", (i,), row(i, f"post {i}"), version=10)
    return [Change("posts", (("id", i),), "update", 1_764_240_000_000_000, f"c{i}") for i in ids]


def test_both_sinks_are_written_at_the_same_time_and_each_holds_every_row() -> None:
    # Given a world whose two sinks each wait inside their write until the other is writing too
    world = World()
    written: list[str] = []
    barrier = threading.Barrier(2)
    sinks = [Meeting(world.opensearch_sink, barrier, written), Meeting(world.dynamodb_sink, barrier, written)]
    fetcher = Fetcher(world.mappings, world.source, sinks, reject=RecordingReject())
    # When a batch is applied
    report = fetcher.apply(posts(world, 1, 2, 3))
    # Then both were written (the barrier opened: they overlapped) and both hold every row
    assert sorted(written) == ["dynamodb", "opensearch"] and not barrier.broken
    assert [world.titles(i) for i in (1, 2, 3)] == [("post 1", "post 1"), ("post 2", "post 2"), ("post 3", "post 3")]
    assert sorted((o["sink"], o["key"]) for o in report.outcomes) == sorted(
        (sink, str(i)) for sink in ("opensearch", "dynamodb") for i in (1, 2, 3)
    )


def test_a_change_one_sink_fails_is_failed_even_though_the_other_sink_holds_it() -> None:
    world = World()
    written: list[str] = []
    barrier = threading.Barrier(2)
    sinks = [Meeting(world.opensearch_sink, barrier, written), Refusing(world.dynamodb_sink, barrier, written)]
    fetcher = Fetcher(world.mappings, world.source, sinks, reject=RecordingReject())
    try:
        fetcher.apply(posts(world, 7))
        raise AssertionError("the change was acknowledged with one sink failing")
    except FetchFailed as failed:
        assert failed.report.failed_keys == {("posts", (("id", 7),))}
        assert "dynamodb failed: sink unavailable" in failed.report.failures[0]
    assert world.document(7) is not None and world.item(7) is None


def test_the_batch_line_says_per_stage_where_each_change_spent_its_time(capsys: Any) -> None:
    # Given a change committed at t, rung 10 ms, drained 30 ms, handed 32 ms and fetched 100 ms later
    world = World()
    t = 1_764_240_000_000_000
    world.source.set("posts", (1,), row(1, "one"), version=10)
    change = Change("posts", (("id", 1),), "update", t, "c1")
    for stage, after_ms in ((Stage.RUNG, 10), (Stage.DRAINED, 30), (Stage.HANDED, 32), (Stage.FETCHED, 100)):
        change = change.stamped(stage, t + after_ms * 1000)
    # When the fetcher applies it
    report = world.fetcher(reject=RecordingReject()).apply([change], messages=1)
    # Then its batch line carries each stage, in pipeline order, with its percentiles
    stages = report.summary.stages.as_line()
    assert list(stages)[:4] == ["ring", "drain", "hand-off", "queue"] and list(stages)[-1] == "total"
    assert [stages[s]["ms"] for s in ("ring", "drain", "hand-off", "queue")] == [[10], [20], [2], [68]]
    assert {"opensearch", "dynamodb"} <= set(stages)
    last_sink = max(stages["opensearch"]["ms"][0], stages["dynamodb"]["ms"][0])
    assert abs(stages["total"]["ms"][0] - (100 + last_sink)) <= 1  # whole ms, each rounded
