"""Benchmark: the fetcher's re-read of a delete-heavy batch, the keys its SKIP LOCKED read did not return.

A batch of deletes names keys the first read (``FOR SHARE SKIP LOCKED``) cannot return: the rows are gone. Such a
key is absent *or* held by an open writer, and the reader must not take a held one for a delete. Before, each was
read alone with the waiting read (a transaction and three statements a key); now one ``FOR SHARE NOWAIT`` read of
them all tells the two apart, and only if it meets a lock are they read alone (fanout.source.reader.read_rows).
Both are run here in one run, interleaved, on MySQL 8.0 (the per-key path by making the NOWAIT read report a lock,
as it does when a writer holds one of the keys): batches of BATCH keys, DELETED of them absent.

    .venv/bin/python -m bench.bench_absent_keys      # -> bench/results/absent_keys.{json,md}
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from bench.harness import local_services, posts_database, write_results
from fanout.model.change import Change
from fanout.model.mapping import default_mappings
from fanout.source import reader as source_reader
from fanout.source.reader import read_rows
from fanout.source.rows import RowState
from local.database import drop_database

ROWS = 2000  # rows of the table; the first DELETED ids of each batch are deleted
BATCH = 500  # keys a batch (a drained batch of the parser is up to 500 changes)
DELETED = 400
ROUNDS = 5


def one_each(conn: Any, mapping: Any, changes: Any) -> list[None]:
    """The NOWAIT read as it answers when a writer holds one of the keys: each key is then read alone."""
    return [None] * len(changes)


def timed(conn: Any, changes: list[Change], per_key: bool) -> float:
    original = source_reader._read_missing
    if per_key:
        source_reader._read_missing = one_each
    try:
        started = time.perf_counter()
        states = read_rows(conn, default_mappings().tables["posts"], changes)
        elapsed = time.perf_counter() - started
    finally:
        source_reader._read_missing = original
    absent = sum(1 for s in states if isinstance(s, RowState) and s.row is None)
    assert absent == DELETED * len(changes) // BATCH, absent
    return elapsed


def main() -> int:
    cfg = local_services()
    db_name, conn = posts_database(cfg, ROWS)
    try:
        with conn.cursor() as cur:
            for start in range(1, ROWS + 1, BATCH):
                cur.execute("DELETE FROM posts WHERE id BETWEEN %s AND %s", (start, start + DELETED - 1))
        changes = [Change("posts", (("id", i),), "delete", 1) for i in range(1, ROWS + 1)]
        batches = [changes[i : i + BATCH] for i in range(0, ROWS, BATCH)]
        runs: dict[str, list[float]] = {"one NOWAIT read": [], "a waiting read per key (before)": []}
        for batch in batches[:1]:  # warm-up
            timed(conn, batch, per_key=False)
            timed(conn, batch, per_key=True)
        for _ in range(ROUNDS):  # interleaved, so drift on a shared machine hits both
            for name, per_key in (("one NOWAIT read", False), ("a waiting read per key (before)", True)):
                runs[name].append(sum(timed(conn, batch, per_key) for batch in batches))
    finally:
        drop_database(cfg, db_name)
    median = {name: statistics.median(values) for name, values in runs.items()}
    per_s = {name: round(ROWS / seconds, 1) for name, seconds in median.items()}
    ratio = round(per_s["one NOWAIT read"] / per_s["a waiting read per key (before)"], 2)
    result = {"rows": ROWS, "batch": BATCH, "absent_per_batch": DELETED, "median_of": ROUNDS,
              "changes_per_s": per_s, "nowait_over_per_key": ratio}  # fmt: skip
    markdown = (
        f"# The re-read of a delete-heavy batch (one run, median of {ROUNDS})\n\n"
        f"Batches of {BATCH} keys, {DELETED} of them deleted rows, read by fanout.source.reader.read_rows on MySQL "
        "8.0.31 (`.venv/bin/python -m bench.bench_absent_keys`).\n\n"
        "| the keys SKIP LOCKED did not return | changes/s read |\n|---|---|\n"
        + "".join(f"| {name} | {value} |\n" for name, value in per_s.items())
        + f"| **one NOWAIT read / a read per key** | **{ratio}** |\n"
    )
    write_results("absent_keys", result, markdown)
    print(markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
