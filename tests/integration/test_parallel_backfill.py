"""Parallel backfill against MySQL 8.0, OpenSearch and DynamoDB on ministack: a table split into key ranges,
each worked by its own worker with its own checkpoint, resumable range by range."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from fanout.operations.backfill import BackfillJob, load_checkpoint, run_backfill
from fanout.operations.backfill_parallel import load_plan, plan, run_parallel_backfill
from fanout.pipeline.fetcher import Fetcher
from fanout.sinks.opensearch import OpenSearchSink
from fanout.source.connection import connect
from fanout.source.reader import DatabaseSource
from tests.support.aws import dynamodb_sink
from tests.support.backfill import Harness, cli_environment, insert_posts, insert_settings


@pytest.fixture
def world(harness: Harness) -> Harness:
    """The backfill tests' harness (schema, checkpoint table, sinks; tests/integration/conftest.py), by this name."""
    return harness


def agrees(h: Harness) -> bool:
    """Reconcile of posts, once OpenSearch has made the last writes searchable (its refresh interval)."""
    h.opensearch.indices.refresh(index=h.mapping("posts").opensearch.index)
    return bool(h.reconcile(tables=["posts"]).agrees)


def keys_of(h: Harness, job: BackfillJob) -> list[tuple[Any, ...]]:
    """Every key a range job covers, read with the job's own page query."""
    sql, params = job.page_query(h.mapping(job.table), None, 10**9)
    with h.conn.cursor() as cur:
        cur.execute(sql, params)
        return [tuple(r) for r in cur.fetchall()]


def test_the_ranges_cover_every_key_once_and_the_plan_is_kept(world: Harness) -> None:
    h = world
    # Given 1000 posts and 30 composite-keyed settings
    insert_posts(h, 1000)
    insert_settings(h, ["acme", "bolt", "core"], 10)
    for table, total in (("posts", 1000), ("tenant_settings", 30)):
        job = BackfillJob(table)
        # When the table is planned for 4 workers
        ranges = plan(h.conn, h.mapping(table), job, 4)
        # Then the ranges hold every key exactly once, in order, in near-equal shares
        covered = [key for part in ranges for key in keys_of(h, part)]
        assert len(ranges) == 4 and len(covered) == total and covered == sorted(set(covered))
        assert max(len(keys_of(h, p)) for p in ranges) - min(len(keys_of(h, p)) for p in ranges) <= 3
        # And rows written since do not move the split: the stored plan is used
        assert load_plan(h.conn, h.mapping(table), job, 4) == ranges
    insert_posts(h, 500, start=2001)
    assert plan(h.conn, h.mapping("posts"), BackfillJob("posts"), 4) == load_plan(
        h.conn, h.mapping("posts"), BackfillJob("posts"), 4
    )


def test_workers_copy_their_ranges_at_once_and_the_sinks_agree(world: Harness) -> None:
    h = world
    insert_posts(h, 600)
    connections: list[Any] = []

    def runner() -> Any:
        conn, reader = connect(h.settings), connect(h.settings)
        connections.extend((conn, reader))
        sinks = [OpenSearchSink(h.opensearch), dynamodb_sink(h.table, tombstone_ttl_seconds=3600)]

        def run(job: BackfillJob, **options: Any) -> Any:
            return run_backfill(conn, job, Fetcher(h.mappings, DatabaseSource.over(reader), sinks), **options)

        return run

    seen: dict[int, int] = {}
    try:
        result = run_parallel_backfill(
            h.conn,
            h.mapping("posts"),
            BackfillJob("posts"),
            [runner() for _ in range(3)],
            batch_size=40,
            rate=100_000,
            progress=lambda index, p: seen.__setitem__(index, p.rows_done),
        )
    finally:
        for conn in connections:
            conn.close()
    report = result.as_dict()
    assert (report["status"], report["rows_done"], report["workers"]) == ("done", 600, 3)
    assert sorted(seen) == [0, 1, 2] and sum(seen.values()) == 600  # progress per range, adding up to the total
    assert all(part["status"] == "done" and part["rows_done"] == 200 for part in report["ranges"])
    assert agrees(h)


def test_a_parallel_backfill_killed_mid_run_resumes_every_range_from_its_own_checkpoint(
    world: Harness, local_aws: dict[str, str], opensearch_endpoint: str, tmp_path: Path
) -> None:
    h = world
    # Given 1200 posts and a `fanout backfill` process copying them with 4 workers, 25 a page, 300 rows/s in all
    insert_posts(h, 1200)
    env = {**os.environ, **cli_environment(h, local_aws, opensearch_endpoint, tmp_path)}
    command = [
        str(Path(sys.executable).parent / "fanout"),
        *("backfill", "posts", "--workers", "4", "--batch-size", "25", "--rate", "300"),
    ]
    job, mapping = BackfillJob("posts"), h.mapping("posts")
    process = subprocess.Popen([*command, "--quiet"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        # When it is killed (SIGKILL) once every range has copied a few pages
        deadline = time.monotonic() + 90
        while True:
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "the backfill made no progress"
            ranges = load_plan(h.conn, mapping, job, 4)
            points = [load_checkpoint(h.conn, mapping, r.job_id) for r in ranges or []]
            if ranges and all(p is not None and p.rows_done >= 50 for p in points):
                break
            time.sleep(0.05)
    finally:
        process.kill()
        process.wait()
    assert ranges is not None and len(ranges) == 4
    killed = [load_checkpoint(h.conn, mapping, r.job_id) for r in ranges]
    assert all(k is not None and k.status == "running" and k.rows_done % 25 == 0 for k in killed)
    assert sum(k.rows_done for k in killed if k) < 1200

    # And the same command runs again
    again = subprocess.run([*command, "--json"], env=env, capture_output=True, text=True, timeout=180)
    assert again.returncode == 0, again.stderr
    resumed = json.loads(again.stdout)["jobs"][0]
    # Then every range starts after its own last completed page and copies only its rest
    assert (resumed["status"], resumed["rows_done"], resumed["workers"]) == ("done", 1200, 4)
    for part, at_kill in zip(resumed["ranges"], killed, strict=True):
        assert at_kill is not None
        assert part["job_id"] == at_kill.job_id and part["resumed_from"] == list(at_kill.last_key or ())
        assert (part["status"], part["rows_done"]) == ("done", 300)
        assert part["rows_this_run"] == 300 - at_kill.rows_done
    assert agrees(h)
