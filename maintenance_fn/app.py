"""Maintenance handler: reconcile on a schedule (drift as a metric) and backfills that outlive one invocation.

Events::

    {"action": "reconcile", "sample": 1000, "tables": ["posts"], "repair": false}
    {"action": "backfill", "table": "posts", "from": [1], "to": [5000], "where": "status = %s",
     "params": ["published"], "batch_size": 500, "rate": 2000, "pages_per_invocation": 100}
    {"action": "backfill", "table": "posts", "workers": 4, "rate": 4000}

A backfill copies pages until little time is left (or ``pages_per_invocation``
pages are done: shorter invocations, e.g. to keep each one's load window
small), then, if rows remain, invokes this function again asynchronously with
the same event: the next invocation resumes from the checkpoint
(fanout.operations.backfill). With ``workers`` the table is split into that many key
ranges (the split is kept in the checkpoint table: sending the same event again
finds the same ranges) and this function is invoked once per range, each range
an ordinary backfill with its own checkpoint (``after``: the key it starts after)
and its share of ``rate``; they run as concurrent invocations. Send it again
only once those have stopped, to resume the ranges that are not done. Domain
logic lives in the layer; this page wires it to the environment.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

from fanout.observability import ChangeMetric, instrumented_handler, record
from fanout.operations.backfill import BackfillJob, KeyRange
from fanout.operations.backfill_parallel import plan
from fanout.operations.maintenance import Maintenance

TIME_MARGIN_MS = 60_000  # stop taking pages this long before Lambda stops the function


class BadEvent(ValueError):
    """The event is not a maintenance request; the message names the field."""


@lru_cache(maxsize=1)
def _dependencies() -> Maintenance:
    return Maintenance(source="maintenance")


@lru_cache(maxsize=1)
def _lambda_client() -> Any:
    import boto3

    return boto3.client("lambda")


def _correlation_id(event: Any, context: Any) -> str:
    return str(context.aws_request_id)


def _key(event: dict[str, Any], name: str) -> tuple[Any, ...] | None:
    value = event.get(name)
    if value is None:
        return None
    if not isinstance(value, list):
        raise BadEvent(f"{name} must be a list of key values, got {value!r}")
    return tuple(value)


def _positive_int(event: dict[str, Any], name: str, default: int | None) -> int | None:
    value = event.get(name, default)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise BadEvent(f"{name} must be a positive integer, got {value!r}")
    return value


def _reconcile(deps: Maintenance, event: dict[str, Any]) -> dict[str, Any]:
    sample = _positive_int(event, "sample", None)
    report = deps.reconcile(tables=event.get("tables") or None, sample=sample, repair=bool(event.get("repair", False)))
    for table, sinks in report.tables.items():
        for sink, tally in sinks.items():
            # refused and unchecked rows are not repairable drift, but the sink does not agree with the source
            remaining = (tally.unrepaired if report.repair else tally.drift) + tally.refused + tally.unchecked
            record(ChangeMetric.DRIFT, table, sink, value=remaining)
    return report.as_dict()


def _backfill(deps: Maintenance, event: dict[str, Any], context: Any) -> dict[str, Any]:
    table = event.get("table")
    if not isinstance(table, str):
        raise BadEvent(f"table must be a mapped table's name, got {table!r}")
    batch_size = _positive_int(event, "batch_size", 500)
    assert batch_size is not None
    job = BackfillJob(
        table,
        KeyRange(_key(event, "from"), _key(event, "to"), _key(event, "after")),
        event.get("where"),
        tuple(event.get("params") or ()),
    )
    workers = _positive_int(event, "workers", 1)
    if workers is not None and workers > 1:
        return _split(deps, event, job, workers, context)
    result = deps.backfill(
        job,
        batch_size=batch_size,
        rate=event.get("rate"),
        max_pages=_positive_int(event, "pages_per_invocation", None),
        should_continue=lambda: context.get_remaining_time_in_millis() > TIME_MARGIN_MS,
    )
    if result.status != "done":  # continue in a fresh invocation, from the checkpoint
        continued = {k: v for k, v in event.items() if k != "restart"}
        _lambda_client().invoke(
            FunctionName=context.invoked_function_arn, InvocationType="Event", Payload=json.dumps(continued).encode()
        )
    return result.as_dict()


def _split(deps: Maintenance, event: dict[str, Any], job: BackfillJob, workers: int, context: Any) -> dict[str, Any]:
    """Plan the ranges and start one invocation per range (each continues itself until its range is done)."""
    mapping = deps.mappings.get(job.table)
    if mapping is None:
        raise BadEvent(f"table must be a mapped table's name, got {job.table!r}")
    ranges = plan(deps.conn(), mapping, job, workers, restart=bool(event.get("restart", False)))
    rate = event.get("rate")
    started = []
    for part in ranges:
        bounds = part.key_range
        one = {k: v for k, v in event.items() if k not in ("workers", "from", "to", "after", "restart", "rate")}
        for name, key in (("from", bounds.start), ("to", bounds.end), ("after", bounds.after)):
            if key is not None:
                one[name] = list(key)
        if rate is not None:
            one["rate"] = rate / len(ranges)
        _lambda_client().invoke(
            FunctionName=context.invoked_function_arn, InvocationType="Event", Payload=json.dumps(one).encode()
        )
        started.append({"job_id": part.job_id, **{k: one[k] for k in ("from", "to", "after") if k in one}})
    return {"status": "started", "table": job.table, "workers": len(ranges), "ranges": started}


@instrumented_handler(correlation_id=_correlation_id)
def handler(event: Any, context: Any) -> dict[str, Any]:
    if not isinstance(event, dict) or event.get("action") not in ("reconcile", "backfill"):
        raise BadEvent('event must be an object with "action": "reconcile" or "backfill"')
    deps = _dependencies()
    if event["action"] == "reconcile":
        return _reconcile(deps, event)
    return _backfill(deps, event, context)
