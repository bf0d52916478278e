"""Fetcher handler: re-reads each changed row from MySQL and writes it to OpenSearch and DynamoDB.

One event shape: an SQS batch from the fetch queue, read back into changes by fanout.pipeline.fetch_queue and
applied together by the fetcher. The answer lists the records to retry (partial batch response, built by
fanout.pipeline.fetch_queue); the queue's redrive policy dead-letters them.
Invalid input is recorded in the dead-letter queue once, by the attempt that is not retried.
The fetcher (fanout.pipeline.fetcher.Fetcher: the database, the sinks, the reject recorder and the forwarder of
continuations, for a change via a composed document's relation with more roots than one invocation rebuilds) is
built by fanout.pipeline.wiring.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from fanout.coldstart import collector_paused

with collector_paused():  # the import: modules that live as long as the environment (fanout.coldstart)
    from fanout.deadline import Deadline
    from fanout.observability import instrumented_handler
    from fanout.pipeline.fetch_queue import correlation_id_of, read_batch, reject_batch, sqs_event_problem
    from fanout.pipeline.fetcher import Fetcher, FetchFailed
    from fanout.pipeline.wiring import FetchPath


@lru_cache(maxsize=1)
def _fetcher() -> Fetcher:
    """Built on the first invocation (checked config, validated mapping) and reused, the collector paused while
    it is built (fanout.coldstart).

    What the cold start made (modules, mapping, clients) then lives as long as the execution environment: frozen
    out of the garbage collector's passes, which walked it all on each full pass (a tenth of the fetcher's CPU per
    change, bench/results/fetcher.md). What each batch makes is collected as before.
    """
    with collector_paused():  # frozen at the end
        return FetchPath(source="fetcher", continuations=True).fetcher


def _correlation_id(event: Any, context: Any) -> str:
    """The parser's request id, carried in each change message (the batch logs each change's own id too)."""
    return correlation_id_of(event, str(context.aws_request_id))


@instrumented_handler(correlation_id=_correlation_id)
def handler(event: Any, context: Any) -> dict[str, Any]:
    fetcher = _fetcher()
    problem = sqs_event_problem(event)
    if problem is not None:
        return reject_batch(event, problem, fetcher.reject, context)
    batch = read_batch(event, fetcher.mappings)
    try:
        # bounded by the invocation's time left: what does not fit is answered as unprocessed, never killed mid-write
        report = fetcher.apply(batch.changes, Deadline.of_context(context), messages=batch.records)
    except FetchFailed as exc:
        report = exc.report
    return batch.answer(report, fetcher.reject, fetcher.fan_out.continuations)
