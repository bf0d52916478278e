"""A burst through the deployed local stack: many sessions commit single-row writes at a set rate, then the
backlog (change log + fetch queue) is watched until it is worked off. Shared by the burst e2e test
(tests/e2e/test_burst_e2e.py) and its benchmark (bench/bench_burst.py)."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fanout.capture.names import CHANGE_LOG_TABLE
from local.config import LOG_DIR
from local.database import source_connection
from tests.support.e2e import Stack

MINISTACK_LOG = LOG_DIR / "ministack.log"
TIMED_OUT = "timed out after"  # ministack's line for a function it killed at its timeout


@dataclass
class Burst:
    """``sessions`` sessions, together ``rate`` single-row autocommit statements a second, for ``seconds``."""

    sessions: int
    rate: float
    seconds: float
    label: str = field(default_factory=lambda: f"burst {uuid.uuid4().hex[:8]}")

    def run(self, stack: Stack, statement: Callable[[Any, int], int], count: int | None = None) -> list[int]:
        """Each session runs ``statement(cursor, i)`` at its share of the rate; returns what the calls returned.
        With ``count``, that many statements in all (spread over the sessions), at the same rate."""
        total = count if count is not None else int(self.rate * self.seconds)
        results: list[list[int]] = [[] for _ in range(self.sessions)]
        errors: list[BaseException] = []
        start = time.monotonic() + 0.2

        def session(n: int) -> None:
            conn = source_connection(stack.env, autocommit=True)
            try:
                with conn.cursor() as cur:
                    for k, i in enumerate(range(n, total, self.sessions)):
                        due = start + k * self.sessions / self.rate
                        pause = due - time.monotonic()
                        if pause > 0:
                            time.sleep(pause)
                        results[n].append(statement(cur, i))
            except BaseException as exc:  # surfaced below
                errors.append(exc)
            finally:
                conn.close()

        threads = [threading.Thread(target=session, args=(n,), daemon=True) for n in range(self.sessions)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if errors:
            raise errors[0]
        return [value for part in results for value in part]

    def insert_posts(self, stack: Stack) -> list[int]:
        def insert(cur: Any, i: int) -> int:
            cur.execute("INSERT INTO posts (title, body, author) VALUES (%s, 'b', 'burst')", (f"{self.label} {i}",))
            return int(cur.lastrowid)

        return self.run(stack, insert)

    def delete_posts(self, stack: Stack, keys: Sequence[int]) -> None:
        def delete(cur: Any, i: int) -> int:
            return int(cur.execute("DELETE FROM posts WHERE id = %s", (keys[i],)))

        self.run(stack, delete, count=len(keys))


@dataclass(frozen=True)
class Backlog:
    """What waits: rows in the change log, messages in the fetch queue (visible + in flight)."""

    log_rows: int
    queued: int
    in_flight: int

    @property
    def total(self) -> int:
        return self.log_rows + self.queued + self.in_flight


def backlog(stack: Stack, fetch_queue_url: str) -> Backlog:
    """The log read before the queue: the drainer deletes a change's row only once its message is sent, so a change
    handed on between the two reads is seen in one of them (tests/unit/test_backlog_reading_order.py)."""
    with stack.db.cursor() as cur:
        cur.execute(f"SELECT COUNT(*) FROM {CHANGE_LOG_TABLE}")  # noqa: S608 - a constant
        rows = int(cur.fetchone()[0])
    attributes = stack.client("sqs").get_queue_attributes(
        QueueUrl=fetch_queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return Backlog(
        rows, int(attributes["ApproximateNumberOfMessages"]), int(attributes["ApproximateNumberOfMessagesNotVisible"])
    )


@dataclass
class Drain:
    """The backlog sampled until it was empty: (seconds since the start, backlog) pairs; the start's wall time."""

    samples: list[tuple[float, Backlog]]
    started_at: float = 0.0

    @property
    def seconds(self) -> float:
        return self.samples[-1][0]

    @property
    def peak(self) -> int:
        return max(b.total for _, b in self.samples)

    def fetch_rate(self, applied: Sequence[tuple[float, float]]) -> float | None:
        """The fetch stage's sustained rate (changes a second): the changes the fetchers applied (``applied``:
        :func:`applied_since`) while the fetch queue alone held the backlog, the change log empty (the parser's
        stage is faster on this stack, so this is the pipeline's capacity); None without such a phase. Counted
        from the fetchers' metrics, not from the queue: a message carries a packed batch of changes."""
        tail = [t for t, b in self.samples if b.log_rows == 0 and b.queued + b.in_flight > 0]
        if len(tail) < 2 or tail[-1] - tail[0] < 5:
            return None
        since, until = self.started_at + tail[0], self.started_at + tail[-1]
        changes = sum(count for at, count in applied if since <= at <= until)
        return changes / (tail[-1] - tail[0]) or None

    def capacity(self, window: float = 10.0) -> float:
        """The fastest the backlog shrank over any ``window`` seconds (changes a second): the faster stage's
        rate while both stages work, measured in the same run."""
        best = 0.0
        for i, (t0, b0) in enumerate(self.samples):
            for t1, b1 in self.samples[i + 1 :]:
                if t1 - t0 >= window:
                    best = max(best, (b0.total - b1.total) / (t1 - t0))
                    break
        return best


def watch_drain(stack: Stack, fetch_queue_url: str, timeout: float, interval: float = 1.0) -> Drain:
    """Sample the backlog until it is empty twice in a row (or ``timeout``: AssertionError naming it)."""
    started, started_at = time.monotonic(), time.time()
    samples: list[tuple[float, Backlog]] = []
    empty = 0
    while True:
        now = backlog(stack, fetch_queue_url)
        samples.append((time.monotonic() - started, now))
        empty = empty + 1 if now.total == 0 else 0
        if empty >= 2:
            return Drain(samples, started_at)
        if time.monotonic() - started > timeout:
            raise AssertionError(
                f"the backlog was not worked off in {timeout:.0f}s: {now} (peak {Drain(samples).peak})"
            )
        time.sleep(interval)


def log_offset(path: Path = MINISTACK_LOG) -> int:
    return path.stat().st_size if path.exists() else 0


def timeouts_since(offset: int, path: Path = MINISTACK_LOG) -> list[str]:
    """ministack's lines, since ``offset``, for a function it killed at its timeout."""
    if not path.exists():
        return []
    with path.open("rb") as log:
        log.seek(offset)
        return [line for line in log.read().decode("utf-8", "replace").splitlines() if TIMED_OUT in line]


def applied_since(offset: int, sink: str = "dynamodb", path: Path = MINISTACK_LOG) -> list[tuple[float, float]]:
    """(wall time, changes) of each ``ChangesApplied`` metric record the fetchers wrote for ``sink`` to ministack's
    log since ``offset`` (Embedded Metric Format: one JSON line a flush, the count as a value or a list)."""
    if not path.exists():
        return []
    with path.open("rb") as log:
        log.seek(offset)
        lines = log.read().decode("utf-8", "replace").splitlines()
    applied = []
    for line in lines:
        if '"ChangesApplied"' not in line or not line.startswith("{"):
            continue
        try:
            record = json.loads(line)
        except ValueError:
            continue
        value = record.get("ChangesApplied")
        if record.get("sink") != sink or value is None:
            continue
        applied.append((record["_aws"]["Timestamp"] / 1000, float(sum(value) if isinstance(value, list) else value)))
    return applied


def dead_letters(stack: Stack) -> int:
    attributes = stack.client("sqs").get_queue_attributes(
        QueueUrl=stack.env.dead_letter_queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesNotVisible"])


def fetch_queue_url(stack: Stack) -> str:
    """The stack's fetch queue (its physical id is its URL)."""
    detail = stack.client("cloudformation").describe_stack_resource(
        StackName=stack.env.stack_name, LogicalResourceId="FetchQueue"
    )["StackResourceDetail"]
    return str(detail["PhysicalResourceId"])
