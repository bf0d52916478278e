"""The maintenance function, deployed on the local stack: a backfill that outlives one invocation.

Rows written with the capture kill switch on (`SET @fanout_disable = 1`, as a bulk job would)
never reach the sinks. A backfill asked to stop after a few pages per invocation must re-invoke
itself (InvocationType=Event) and resume from its checkpoint until the key range is done — the
same path a long backfill takes when Lambda's time runs short.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import pytest

from fanout.model.mapping import default_mappings
from fanout.operations.backfill import BackfillJob, KeyRange, load_checkpoint
from fanout.operations.backfill_parallel import load_plan
from tests.support.e2e import Stack, post
from tests.support.sequences import numbers
from tests.support.waiting import wait_until

POSTS = default_mappings().tables["posts"]
ROWS, BATCH, PAGES_PER_INVOCATION = 150, 25, 2


@pytest.fixture
def uncaptured_posts(stack: Stack) -> Iterator[list[int]]:
    """ROWS posts with ids of their own, inserted with capture switched off; deleted (captured) after."""
    first = random.randrange(10**9, 2 * 10**9)
    ids = list(range(first, first + ROWS))
    with stack.db.cursor() as cur:
        cur.execute("SET @fanout_disable = 1")
        try:
            cur.execute(
                "INSERT INTO posts (id, title, body, author) SELECT seq, CONCAT('bulk ', seq), 'b', 'bulk job' "
                f"FROM {numbers(ids[0], ids[-1])} s"
            )
        finally:
            cur.execute("SET @fanout_disable = NULL")
    yield ids
    stack.sql("DELETE FROM posts WHERE id BETWEEN %s AND %s", ids[0], ids[-1])


def agrees(stack: Stack, key: int) -> bool:
    return stack.agreed(post(key)) is not None


def invoke(stack: Stack, event: dict[str, Any]) -> dict[str, Any]:
    response, body = stack.invoke(stack.env.maintenance_function_name, event)
    assert "FunctionError" not in response, body
    return dict(body)


def test_a_backfill_continues_in_new_invocations_until_its_range_is_done(
    stack: Stack, uncaptured_posts: list[int]
) -> None:
    ids = uncaptured_posts
    # Given rows the triggers never saw
    assert not agrees(stack, ids[0]) and not agrees(stack, ids[-1])

    # When the maintenance function is asked to backfill their range, two pages per invocation
    event = {
        "action": "backfill",
        "table": "posts",
        "from": [ids[0]],
        "to": [ids[-1]],
        "batch_size": BATCH,
        "pages_per_invocation": PAGES_PER_INVOCATION,
    }
    first = invoke(stack, event)

    # Then the first invocation stops after its two pages, with rows left
    assert (first["status"], first["rows_this_run"]) == ("running", BATCH * PAGES_PER_INVOCATION), first
    # And the invocations it starts finish the job from the checkpoint: every page once, no page redone
    job = BackfillJob("posts", KeyRange((ids[0],), (ids[-1],)))
    done = wait_until(
        "the backfill to finish in later invocations",
        lambda: (c := load_checkpoint(stack.db, POSTS, job.job_id)) is not None and c.status == "done" and c,
        timeout=120,
    )
    assert (done.rows_done, done.pages_done, done.last_key) == (ROWS, ROWS // BATCH, (ids[-1],))
    # And every row of the range is in both sinks, as the source has it
    disagreeing = [key for key in ids if not agrees(stack, key)]
    assert disagreeing == []


def test_a_backfill_with_workers_runs_one_invocation_chain_per_range(stack: Stack, uncaptured_posts: list[int]) -> None:
    ids = uncaptured_posts
    # When the maintenance function is asked to backfill the rows' range with 3 workers, two pages per invocation
    event = {
        "action": "backfill",
        "table": "posts",
        "from": [ids[0]],
        "to": [ids[-1]],
        "workers": 3,
        "batch_size": BATCH,
        "pages_per_invocation": PAGES_PER_INVOCATION,
    }
    started = invoke(stack, event)
    # Then it plans three ranges and starts one invocation for each
    assert (started["status"], started["workers"]) == ("started", 3), started
    job = BackfillJob("posts", KeyRange((ids[0],), (ids[-1],)))
    ranges = load_plan(stack.db, POSTS, job, 3)
    assert ranges is not None and [r.job_id for r in ranges] == [r["job_id"] for r in started["ranges"]]

    # And every range finishes from its own checkpoint, in its own chain of invocations
    def finished(job_id: str) -> bool:
        checkpoint = load_checkpoint(stack.db, POSTS, job_id)
        return checkpoint is not None and checkpoint.status == "done"

    for part in ranges:
        wait_until(f"range {part.key_range} to finish", lambda part=part: finished(part.job_id), timeout=180)
    points = [load_checkpoint(stack.db, POSTS, part.job_id) for part in ranges]
    assert sum(p.rows_done for p in points if p) == ROWS
    assert [key for key in ids if not agrees(stack, key)] == []


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        ({"action": "backfill", "table": "posts", "pages_per_invocation": 0}, "pages_per_invocation"),
        ({"action": "backfill", "table": "posts", "batch_size": "many"}, "batch_size"),
        ({"action": "vacuum"}, "action"),
    ],
)
def test_a_malformed_maintenance_event_is_refused_with_the_field_named(
    stack: Stack, event: dict[str, Any], reason: str
) -> None:
    response, error = stack.invoke(stack.env.maintenance_function_name, event)
    # Lambda names the exception class; ministack 1.5.33 says "Runtime.HandlerError" for every one
    assert response.get("FunctionError") and error["errorType"] in ("BadEvent", "Runtime.HandlerError")
    assert reason in error["errorMessage"]
