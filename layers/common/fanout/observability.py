"""Logs, metrics and traces for every function: the one place the rest of the code imports them from.

Built on Powertools for AWS Lambda (Python):

- **Logs**: one JSON object per line (Powertools ``Logger``), with the function's
  context, ``cold_start`` and a ``correlation_id``: the parser's request id,
  carried to the fetcher inside each change message, so a single Logs Insights
  filter follows one change through both functions. ``log(level, message,
  **fields)`` puts ``fields`` at the top level of the line.
- **Metrics**: CloudWatch embedded metric format (Powertools ``Metrics``),
  namespace ``$POWERTOOLS_METRICS_NAMESPACE`` (``fanout``), written to stdout
  and turned into metrics by CloudWatch Logs, no API call on the data path.
  Each value is published twice, from one blob per table and sink declaring two
  dimension sets: stack level (``service`` only: what the dashboard and the
  alarms read) and ``service``, ``table``, ``sink`` (for drilling in). See
  :class:`ChangeMetric`.
- **Traces**: AWS X-Ray through Powertools ``Tracer`` (aws-xray-sdk), with
  pymysql, botocore (boto3) and http.client (opensearch-py's urllib3
  transport) patched. Only inside Lambda with an X-Ray daemon
  (``AWS_XRAY_DAEMON_ADDRESS``, set by Lambda when ``Tracing: Active``): the
  tests, the CLI and the local stack have none, and nothing is patched there.

Handlers stay thin: ``@instrumented_handler(correlation_id=...)`` wraps one in
all three (logger context, metric flush with the cold-start metric, handler
subsegment).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from enum import StrEnum
from typing import IO, TYPE_CHECKING, Any, TypeVar

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit

if TYPE_CHECKING:
    from fanout.model.change import Change
    from fanout.model.mapping import Mappings

SERVICE = os.environ.get("POWERTOOLS_SERVICE_NAME", "").strip() or "fanout"
NAMESPACE = os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "").strip() or "fanout"
MAX_PAYLOAD_CHARS = 8192  # a trigger payload names a key; anything bigger names no table
TRACED_MODULES = ("pymysql", "botocore", "httplib")  # httplib: opensearch-py's urllib3 connection
CONSTANT_CONTEXT_KEYS = ("function_name", "function_memory_size", "function_arn")  # left off log lines


class _CurrentStdout(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stdout`` is at the time of the call (Lambda's, or a test's capture)."""

    @property
    def stream(self) -> IO[str]:
        return sys.stdout

    @stream.setter
    def stream(self, _value: IO[str]) -> None:
        pass


logger = Logger(
    service=SERVICE,
    level=os.environ.get("LOG_LEVEL", "INFO").upper(),
    logger_handler=_CurrentStdout(),
    utc=True,
)


def _tracing_possible() -> bool:
    if os.environ.get("POWERTOOLS_TRACE_DISABLED", "").lower() in ("1", "true"):
        return False
    return bool(os.environ.get("AWS_LAMBDA_FUNCTION_NAME") and os.environ.get("AWS_XRAY_DAEMON_ADDRESS"))


# Built only where it can trace: building a Tracer imports the X-Ray SDK (about half of a function's cold import
# where tracing is off: the tests, the CLI, the local stack; bench/results/fetcher.md).
tracer: Tracer | None = Tracer(service=SERVICE, auto_patch=False) if _tracing_possible() else None
metrics = Metrics(namespace=NAMESPACE, service=SERVICE)  # the cold-start metric; the rest: record()
_patched = False


def enable_tracing() -> bool:
    """Patch pymysql, boto3/botocore and the HTTP clients for X-Ray, once; False where tracing is off."""
    global _patched
    if tracer is None or tracer.disabled:
        return False
    if not _patched:
        tracer.patch(modules=list(TRACED_MODULES))
        _patched = True
    return True


def log(level: int, message: str, **fields: Any) -> None:
    """Log one structured line; ``fields`` become top-level JSON keys."""
    write = {
        logging.DEBUG: logger.debug,
        logging.INFO: logger.info,
        logging.WARNING: logger.warning,
        logging.ERROR: logger.error,
        logging.CRITICAL: logger.critical,
    }.get(level, logger.info)
    write(message, extra=fields, stacklevel=3)  # the line's "location" is log()'s caller


def log_enabled(level: int) -> bool:
    """Whether a line of ``level`` would be written (to skip building the fields of one that would not)."""
    return level >= logger.log_level


@contextmanager
def traced(name: str, **annotations: str) -> Iterator[None]:
    """An X-Ray subsegment around a step (a no-op where tracing is off); annotations are searchable."""
    if tracer is None or tracer.disabled:
        yield
        return
    with tracer.provider.in_subsegment(name) as subsegment:
        for key, value in annotations.items():
            subsegment.put_annotation(key, value)
        yield


# --------------------------------------------------------------------------- metrics


class ChangeMetric(StrEnum):
    """What the pipeline counts; every one is published per table (and sink, where there is one)."""

    RECEIVED = "ChangesReceived"  # parser: valid changes handed to the fetcher
    REJECTED = "ChangesRejected"  # parser or fetcher: invalid input recorded in the dead-letter queue
    APPLIED = "ChangesApplied"  # fetcher: a sink was written (upsert or delete)
    STALE_SKIPPED = "ChangesStaleSkipped"  # fetcher: the sink already held a newer version
    # fetcher: one value per attempt, 1 if it failed and 0 if not, so Sum is the number of
    # failures and Average the failure rate (what the error-rate alarm watches).
    FAILED = "ChangesFailed"
    LAG = "ReplicationLag"  # fetcher: trigger time -> applied in a sink, milliseconds
    DRIFT = "ReplicationDrift"  # reconcile: rows that differ between the source and a sink (after any repair)
    EVENTS_PUBLISHED = "EventsPublished"  # fetcher: change events put on the event bus (fanout.sinks.eventbridge)
    EVENTS_FAILED = "EventsFailed"  # fetcher: change events not published (retried, or dead-lettered)


class StackMetric(StrEnum):
    """What is published at stack level only (no table dimension)."""

    CHANGE_LOG_DEPTH = "ChangeLogDepth"  # sweeper: rows waiting in the change log
    CHANGE_LOG_AGE = "ChangeLogOldestAgeSeconds"  # sweeper: age of the oldest of them (0 when empty)
    SCHEMA_DRIFT = "SchemaDrift"  # maintenance: drifts `fanout check` names (fanout.operations.schema_check)


UNKNOWN_TABLE = "_unknown"  # the table dimension of input that names no mapped table


def metric_table(payload: Any, mappings: Mappings) -> str:
    """The table a (possibly invalid) payload names, if it is a mapped one: dimensions stay bounded."""
    if isinstance(payload, (str, bytes)):
        if len(payload) > MAX_PAYLOAD_CHARS:
            return UNKNOWN_TABLE
        try:
            payload = json.loads(payload)
        except (ValueError, RecursionError):
            return UNKNOWN_TABLE
    table = payload.get("table") if isinstance(payload, dict) else None
    return table if isinstance(table, str) and mappings.get(table) is not None else UNKNOWN_TABLE


_UNITS = {ChangeMetric.LAG: MetricUnit.Milliseconds}
_detail: dict[tuple[str, str], EphemeralMetrics] = {}


_publishing = True


@contextmanager
def metrics_unpublished() -> Iterator[None]:
    """No metrics recorded inside (the operator CLI: off Lambda nothing turns EMF blobs into metrics, and
    Powertools prints a blob every 100 values, which filled a backfill's output)."""
    global _publishing
    previous, _publishing = _publishing, False
    try:
        yield
    finally:
        _publishing = previous


STACK_LEVEL = ["service"]  # the dimension set the alarms and the dashboard's main graphs read
MAX_VALUES = 100  # Powertools prints a blob by itself at 100 values of a metric: flushed just before, here


def record(metric: ChangeMetric, table: str, sink: str = "", value: float = 1.0) -> None:
    """Add one value of ``metric`` for ``table`` (and ``sink``), published when the handler returns."""
    record_values(metric, table, sink, (value,))


def record_values(metric: ChangeMetric, table: str, sink: str, values: Sequence[float]) -> None:
    """Add ``values`` of ``metric`` for ``table`` (and ``sink``), in order: as many calls of :func:`record`, in one.

    The fetcher records a batch's values per table and sink at once (three values a change and sink, one call
    each, were a tenth of its CPU: bench/results/fetcher_profile.txt). A blob holds at most MAX_VALUES values of a
    metric; a full one is printed and the rest go to the next.
    """
    if not _publishing or not values:
        return
    detail = _detail.get((table, sink))
    if detail is None:
        detail = EphemeralMetrics(namespace=NAMESPACE, service=SERVICE)
        detail.add_dimension(name="table", value=table)
        if sink:
            detail.add_dimension(name="sink", value=sink)
        _detail[(table, sink)] = detail
    unit = _UNITS.get(metric, MetricUnit.Count)
    start = 0
    while start < len(values):
        held: list[float] = detail.metric_set.get(metric.value, {}).get("Value", [])
        if len(held) >= MAX_VALUES - 1:
            _print_blob(detail)
            held = []
        if not held:  # a metric's first value in a blob: Powertools checks its name and unit
            detail.add_metric(name=metric.value, unit=unit, value=values[start])
            held = detail.metric_set[metric.value]["Value"]
            start += 1
        # The rest appended as add_metric would: it formats the metric's every value into a DEBUG message on
        # each call (O(values) a value), the fetcher's largest CPU cost per change (bench/results/fetcher.md).
        room = MAX_VALUES - 1 - len(held)
        held.extend(float(value) for value in values[start : start + room])
        start += room


def record_accepted(changes: Sequence[Change], correlation_id: str) -> None:
    """The metric and the line of each change handed on to the fetcher: one ``change accepted`` line a change, the
    count recorded once per table (one call a change was a fifth of a hand-off's CPU: bench/results/handoff.md)."""
    per_table: dict[str, int] = {}
    for change in changes:
        per_table[change.table] = per_table.get(change.table, 0) + 1
        log(logging.INFO, "change accepted", correlation_id=correlation_id, table=change.table,
            key=change.document_id, action=change.action)  # fmt: skip
    for table, count in per_table.items():
        record_values(ChangeMetric.RECEIVED, table, "", (1.0,) * count)


def _print_blob(detail: EphemeralMetrics) -> None:
    """One EMF blob publishing its values twice: per table (and sink), and at stack level.

    A blob may declare several dimension sets; declaring ``[service]`` beside ``[table, sink,
    service]`` replaces a separate stack-level blob per invocation (a few hundred bytes ingested
    each). CloudWatch aggregates the
    stack-level values of every blob, so sums, averages and percentiles are the same.
    """
    blob = detail.serialize_metric_set()
    for directive in blob["_aws"]["CloudWatchMetrics"]:
        directive["Dimensions"].append(list(STACK_LEVEL))
    print(json.dumps(blob, separators=(",", ":")))
    detail.metric_set.clear()


def record_stack(metric: StackMetric, value: float) -> None:
    """Add one value of a stack-level ``metric``, published when the handler returns."""
    unit = MetricUnit.Seconds if metric is StackMetric.CHANGE_LOG_AGE else MetricUnit.Count
    metrics.add_metric(name=metric.value, unit=unit, value=value)


def flush_metrics() -> None:
    """Write the per-table blobs, each also at stack level (``metrics.log_metrics`` writes the cold start)."""
    try:
        for detail in _detail.values():
            if detail.metric_set:
                _print_blob(detail)
    finally:
        _detail.clear()


# --------------------------------------------------------------------------- handlers

Handler = TypeVar("Handler", bound=Callable[..., Any])


def _without_the_empty_set_warning(handler: Callable[..., Any]) -> Callable[..., Any]:
    """``metrics`` carries only the cold start (record()'s blobs publish the stack level themselves), so
    Powertools would warn on every invocation that it has no application metrics: not news."""

    @functools.wraps(handler)
    def call(event: Any, context: Any) -> Any:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="No application metrics to publish", category=UserWarning)
            return handler(event, context)

    return call


def instrumented_handler(correlation_id: Callable[[Any, Any], str]) -> Callable[[Handler], Handler]:
    """Logger context + correlation id, metric flush (with the cold-start metric), tracing, for a handler."""

    def decorate(handler: Handler) -> Handler:
        @functools.wraps(handler)
        def with_correlation_id(event: Any, context: Any) -> Any:
            enable_tracing()
            # The same on every line of a log group (its name says which function; REPORT lines the memory):
            # ~150 bytes a line that CloudWatch Logs would ingest for nothing.
            logger.remove_keys(list(CONSTANT_CONTEXT_KEYS))
            logger.set_correlation_id(correlation_id(event, context))
            try:
                return handler(event, context)
            finally:
                flush_metrics()

        wrapped: Any = logger.inject_lambda_context(clear_state=True)(with_correlation_id)
        wrapped = _without_the_empty_set_warning(metrics.log_metrics(wrapped, capture_cold_start_metric=True))
        if tracer is not None:
            wrapped = tracer.capture_lambda_handler(wrapped, capture_response=False)
        return functools.wraps(handler)(wrapped)  # type: ignore[return-value]

    return decorate
