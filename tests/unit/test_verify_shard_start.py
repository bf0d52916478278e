"""Reading a row's sink state while its index is created: the shard answers 503 until it starts."""

from __future__ import annotations

from typing import Any

import pytest
from opensearchpy.exceptions import TransportError

from fanout.model.change import Change
from fanout.model.mapping import parse_mappings
from fanout.operations.verify import SHARD_START_ATTEMPTS, fetch_sink_state

MAPPING = parse_mappings(
    {"tables": {"posts": {"primary_key": [{"column": "id"}], "dynamodb": {"enabled": False}}}}
).tables["posts"]
CHANGE = Change("posts", (("id", 7),), "update", 0)
STARTING = TransportError(503, "no_shard_available_action_exception", "CurrentState[RECOVERING]")


class StartingIndex:
    """An opensearch-py client whose index answers 503 for its first ``starting`` reads, as a new shard does."""

    def __init__(self, starting: int, error: TransportError = STARTING) -> None:
        self.starting, self.error, self.reads = starting, error, 0

    def get(self, *, index: str, id: str) -> dict[str, Any]:
        self.reads += 1
        if self.reads <= self.starting:
            raise self.error
        return {"_index": index, "_id": id, "found": True, "_source": {"id": 7}}


def test_a_starting_shard_is_waited_for() -> None:
    client, waits = StartingIndex(starting=3), []
    assert fetch_sink_state(MAPPING, CHANGE, client, lambda _: None, sleep=waits.append) == ({"id": 7}, None)
    assert client.reads == 4 and waits == [0.2] * 3


def test_a_shard_that_never_starts_and_other_errors_are_raised() -> None:
    waits: list[float] = []
    with pytest.raises(TransportError):
        fetch_sink_state(MAPPING, CHANGE, StartingIndex(starting=10_000), lambda _: None, sleep=waits.append)
    assert len(waits) == SHARD_START_ATTEMPTS - 1  # ten seconds of waiting, none of it spent in the test
    waits.clear()
    with pytest.raises(TransportError):  # a 500 is not a starting shard: no waiting
        fetch_sink_state(
            MAPPING, CHANGE, StartingIndex(1, TransportError(500, "boom", "boom")), lambda _: None, sleep=waits.append
        )
    assert waits == []
