"""Operating the deployed app on the local stack: logs and metrics of a change, dead letters replayed, status.

What the functions print lands in their CloudWatch Logs groups (ministack keeps
them as Lambda does), so these tests read exactly what an operator would: the
JSON log lines, the EMF metric blobs, the dead-letter queue and `fanout status`.
A sink outage is a real one: the stack's OpenSearch node (a real one) is stopped.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from fanout_cli.dead_letters.queue import DeadLetterQueue
from fanout_cli.main import main as fanout
from fanout_cli.stack_resources import StackResources
from local.config import LocalConfig
from local.processes import stop_process
from local.services import ensure_opensearch
from tests.support.e2e import Stack, post
from tests.support.waiting import wait_until


@pytest.fixture(scope="module")
def dlq(stack: Stack) -> DeadLetterQueue:
    env = stack.env.environ()
    return DeadLetterQueue(stack.client("sqs"), stack.env.dead_letter_queue_url, StackResources.from_env(env))


@pytest.fixture
def cli(stack: Stack, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Callable[..., Any]:
    """`fanout ...` in process, configured as an operator would be: `set -a; . .local/stack.env`."""
    for name, value in stack.env.environ().items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("FANOUT_STACK_NAME", raising=False)

    def run(*argv: str) -> tuple[int, Any]:
        capsys.readouterr()
        code = fanout(list(argv))
        out = capsys.readouterr().out
        return code, json.loads(out) if "--json" in argv else out

    return run


def insert_post(stack: Stack, title: str) -> int:
    return stack.sql("INSERT INTO posts (title, body, author) VALUES (%s, 'b', 'ops')", title)


def log_events(stack: Stack, group: str, since: float) -> list[dict[str, Any]]:
    """The group's events from ``since`` (epoch s) on: ministack answers at most 10,000 events and no nextToken,
    so a group a benchmark or earlier tests filled would hide the newest ones."""
    answer = stack.client("logs").filter_log_events(logGroupName=group, startTime=int(since * 1000))
    return list(answer.get("events", []))


def json_lines(events: list[dict[str, Any]]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    found = []
    for event in events:
        if event["message"].startswith("{"):
            found.append((event, json.loads(event["message"])))
    return found


def agreed(stack: Stack, key: int) -> bool:
    return stack.agreed(post(key)) is not None


def test_a_change_logs_every_step_under_one_correlation_id_and_emits_its_lag(stack: Stack) -> None:
    # Given / When a row is inserted
    since = time.time() - 5  # a margin for the clocks of the functions' processes
    key = insert_post(stack, f"observed {uuid.uuid4().hex[:8]}")

    # Then the fetcher logs its batch (one INFO line) with the correlation id the parser logged on acceptance
    def applied() -> list[tuple[dict[str, Any], dict[str, Any]]]:
        lines = json_lines(log_events(stack, stack.env.fetcher_log_group, since))
        return [
            (e, f)
            for e, f in lines
            if f.get("message") == "changes applied"
            and f.get("last_applied", {}).get("posts", {}).get("key") == str(key)
        ]

    [(event, batch)] = wait_until("the batch line in the fetcher's log", applied)
    [correlation_id] = batch["correlation_ids"]

    # (a drainer may still be lingering after handing the change on: its lines arrive when its invocation ends)
    def accepted_lines() -> list[dict[str, Any]]:
        parser_lines = json_lines(log_events(stack, stack.env.parser_log_group, since))
        return [f for _, f in parser_lines if f.get("message") == "change accepted" and f.get("key") == str(key)]

    accepted = wait_until("the parser's acceptance in its log", accepted_lines)
    assert [f["correlation_id"] for f in accepted] == [correlation_id]
    assert accepted[0]["function_request_id"] == correlation_id  # the parser's own request id
    written = batch["tables"]["posts"]
    assert {sink: counts["applied"] for sink, counts in written.items()} == {
        "opensearch": 1,
        "dynamodb": 1,
        "eventbridge": 1,  # posts publishes its change events (tables.json)
    }
    assert batch["function_request_id"] != correlation_id  # another function, same id

    # and the same invocation wrote the lag of each write as an EMF metric, per table and sink
    stream = stack.client("logs").filter_log_events(
        logGroupName=stack.env.fetcher_log_group, logStreamNames=[event["logStreamName"]], startTime=int(since * 1000)
    )["events"]
    blobs = [f for _, f in json_lines(stream) if "_aws" in f and f.get("table") == "posts"]
    lag_by_sink = {b["sink"]: b["ReplicationLag"] for b in blobs if "ReplicationLag" in b}
    for sink, counts in written.items():
        assert round(lag_by_sink[sink][-1]) == counts["lag_ms"][-1]
    [directive] = blobs[0]["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == "fanout"
    assert ["table", "sink", "service"] in directive["Dimensions"]


def stop_opensearch() -> None:
    assert stop_process("opensearch"), "the local OpenSearch node was not running"


def start_opensearch() -> None:
    ensure_opensearch(LocalConfig.from_env())


def test_a_change_that_failed_in_a_sink_is_redriven_from_the_dead_letter_queue(
    stack: Stack, dlq: DeadLetterQueue, cli: Callable[..., Any]
) -> None:
    # Given an empty dead-letter queue and a replicated row
    for letter in dlq.hold_all(hold_seconds=60):
        dlq.delete(letter)
    key = insert_post(stack, f"before the outage {uuid.uuid4().hex[:8]}")
    wait_until("the row to be replicated", lambda: agreed(stack, key))

    # When OpenSearch goes down and the row changes
    stop_opensearch()
    try:
        title = f"during the outage {uuid.uuid4().hex[:8]}"
        changed_at = time.time()
        with stack.db.cursor() as cur:
            cur.execute("UPDATE posts SET title = %s WHERE id = %s", (title, key))

        # Then, once its retries are spent (Lambda's async retries, or the fetch queue's receives), the fetch is
        # in the dead-letter queue. The queue is shared with the rest of the stack (the scheduled sweeper may
        # replay another test's parked change into this outage), so the test follows its own letter by id.
        about_this_key = re.compile(rf'"id\\?"\s*:\s*{key}\b')

        def ours() -> list[dict[str, Any]]:
            code, listed = cli("dlq", "list", "--table", "posts", "--json")
            assert code == 0
            mine = []
            for summary in listed:
                code, shown = cli("dlq", "show", summary["id"], "--json")
                if code == 0 and about_this_key.search(json.dumps(shown["record"])):
                    mine.append(summary)
            return mine

        # (three receives, the queue hiding each for the fetcher's 60 s timeout: local/deploy.py)
        [letter] = wait_until("the failed fetch in the dead-letter queue", ours, timeout=240)
        assert (letter["kind"], letter["source"]) == ("queued-change", "fetcher")  # its error: the fetcher's log

        # and a redrive while the sink is still down leaves it there, with the new error
        code, results = cli("dlq", "redrive", "--id", letter["id"], "--json")
        assert code == 1
        assert [(r["outcome"], r["function"]) for r in results] == [("kept", stack.env.fetcher_function_name)]
        [kept] = ours()
        # (the fetcher's answer names why)
        assert kept["redrive_count"] == 1 and "opensearch failed" in kept["last_redrive_error"]

        # and status reports the dead letter against the table
        code, status = cli("status", "--since", "10m", "--json")
        assert status["dead_letter_queue"]["depth"] >= 1 and status["tables"]["posts"]["dead_letters"] >= 1
        assert status["tables"]["posts"]["counts"]["failed"] >= 3  # 3 receives (local), or 1 + Lambda's 2 retries
    finally:
        start_opensearch()

    # When the sink is back and the letter is redriven (a dry run first changes nothing)
    code, planned = cli("dlq", "redrive", "--id", kept["id"], "--dry-run", "--json")
    assert [r["outcome"] for r in planned] == ["would-replay"]
    outage_ms = (time.time() - changed_at) * 1000
    code, results = cli("dlq", "redrive", "--id", kept["id"], "--json")

    # Then it was applied: both sinks hold the changed row, and the letter is gone from the queue
    assert code == 0 and [r["outcome"] for r in results] == ["replayed"]
    assert agreed(stack, key)
    assert stack.opensearch.get(index="posts", id=str(key))["_source"]["title"] == title
    assert ours() == []

    # and status shows the queue as it now is and a lag that spans the outage
    code, status = cli("status", "--since", "10m", "--json")
    elapsed_ms = (time.time() - changed_at) * 1000
    posts = status["tables"]["posts"]
    code, left = cli("dlq", "list", "--json")
    assert status["dead_letter_queue"]["depth"] == len(left)
    assert posts["last_applied"]["key"] == str(key)
    assert outage_ms <= posts["lag_ms"]["opensearch"]["last"] <= elapsed_ms
    code, text = cli("status", "--since", "10m")
    assert "dead-letter queue: 0 message(s)" in text and "lag opensearch" in text
