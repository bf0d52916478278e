"""tests/support/burst.backlog, the "nothing left" signal of the burst test and of bench_end_to_end: a change the
drainer hands from the change log to the fetch queue while the backlog is read is still counted.

The drainer sends a change's message before it deletes its row, so reading the log first and the queue second can
never miss it; the other order can (the queue read before the send, the log read after the delete).
"""

from __future__ import annotations

from dataclasses import dataclass
from types import TracebackType
from typing import Any

import pytest

from tests.support.burst import backlog


@dataclass
class HandOffWorld:
    """One change in the change log, handed to the fetch queue by the drainer (send, then delete) once the backlog
    has been read ``hand_off_after`` times (0: before the first read)."""

    hand_off_after: int
    log_rows: int = 1
    queued: int = 0
    reads: int = 0

    def __post_init__(self) -> None:
        if self.hand_off_after == 0:
            self.hand_off()

    def read(self) -> None:
        self.reads += 1
        if self.reads == self.hand_off_after:
            self.hand_off()

    def hand_off(self) -> None:
        self.queued += 1  # SendMessageBatch returned
        self.log_rows -= 1  # then the claimed row's DELETE


class Cursor:
    def __init__(self, world: HandOffWorld) -> None:
        self.world = world
        self.count = 0

    def __enter__(self) -> Cursor:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        return None

    def execute(self, sql: str) -> None:
        assert sql.startswith("SELECT COUNT(*) FROM")
        self.count = self.world.log_rows
        self.world.read()

    def fetchone(self) -> tuple[int]:
        return (self.count,)


class Sqs:
    def __init__(self, world: HandOffWorld) -> None:
        self.world = world

    def get_queue_attributes(self, **_: Any) -> dict[str, Any]:
        attributes = {
            "ApproximateNumberOfMessages": str(self.world.queued),
            "ApproximateNumberOfMessagesNotVisible": "0",
        }
        self.world.read()
        return {"Attributes": attributes}


class World:
    """What backlog reads of a Stack: its database connection and its SQS client."""

    def __init__(self, world: HandOffWorld) -> None:
        self.world = world
        self.db = self

    def cursor(self) -> Cursor:
        return Cursor(self.world)

    def client(self, service: str) -> Sqs:
        assert service == "sqs"
        return Sqs(self.world)


@pytest.mark.parametrize("hand_off_after", [0, 1, 2], ids=["before both reads", "between the reads", "after both"])
def test_a_change_handed_from_the_log_to_the_queue_while_the_backlog_is_read_is_counted(hand_off_after: int) -> None:
    world = HandOffWorld(hand_off_after)
    seen = backlog(World(world), "queue-url")  # type: ignore[arg-type]
    assert seen.total >= 1, f"the change was in neither place the backlog read: {seen}"
