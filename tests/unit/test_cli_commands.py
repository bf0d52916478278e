"""The command line's wiring: options become the arguments the work takes; misuse is a usage error (exit 2)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from fanout.pipeline.rejects import message_body, rejection_record
from fanout_cli.commands import dlq
from fanout_cli.dead_letters.records import DeadLetter, parse_dead_letter
from fanout_cli.main import main
from fanout_cli.stack_resources import StackResources

RESOURCES = StackResources("https://sqs.local/q", "t-parser", "t-fetcher", "/t/parser", "/t/fetcher")


def letter(source: str, payload: Any, message_id: str, sent_ms: int) -> DeadLetter:
    message = {
        "MessageId": message_id,
        "ReceiptHandle": f"rh-{message_id}",
        "Body": message_body(rejection_record(source, "pk.id: must be an integer", payload, "req-1")),
        "Attributes": {"SentTimestamp": str(sent_ms), "ApproximateReceiveCount": "1"},
    }
    return parse_dead_letter(message, RESOURCES)


class HeldQueue:
    """The dead-letter queue as ``fanout dlq list`` reads it: every letter held, then released."""

    def __init__(self, *letters: DeadLetter) -> None:
        self.letters = list(letters)
        self.released: list[str] = []

    def hold_all(self, hold_seconds: int) -> list[DeadLetter]:
        return list(self.letters)

    def release(self, letters: list[DeadLetter]) -> None:
        self.released += [held.message_id for held in letters]


@pytest.fixture
def queue(monkeypatch: pytest.MonkeyPatch) -> HeldQueue:
    newer = letter("parser", {"v": 1, "action": "update", "table": "posts", "pk": {"id": 2}}, "m-new", 1764240060000)
    older = letter("parser", {"v": 1, "action": "update", "table": "posts", "pk": {"id": 1}}, "m-old", 1764240000000)
    other = letter("fetcher", {"table": "comments", "pk": {"id": 3}}, "m-comments", 1764240000000)
    held = HeldQueue(newer, older, other)
    monkeypatch.setattr(dlq, "_queue", lambda stack_name: (held, RESOURCES))
    return held


def test_dlq_list_selects_by_its_filter_options_oldest_first(
    queue: HeldQueue, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["dlq", "list", "--table", "posts", "--source", "parser", "--kind", "rejected", "--older-than", "1h"]
    assert main([*argv, "--json"]) == 0
    assert [summary["id"] for summary in json.loads(capsys.readouterr().out)] == ["m-old", "m-new"]
    assert sorted(queue.released) == ["m-comments", "m-new", "m-old"]  # every letter read is let go again

    assert main(["dlq", "list", "--id", "m-comments", "--id", "m-new", "--json"]) == 0
    assert [summary["id"] for summary in json.loads(capsys.readouterr().out)] == ["m-comments", "m-new"]
    assert main(["dlq", "list", "--newer-than", "1h", "--json"]) == 0  # all three were queued in 2025
    assert json.loads(capsys.readouterr().out) == []


def test_dlq_list_without_json_ends_with_the_count(queue: HeldQueue, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dlq", "list", "--source", "fetcher"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "1 of 3 dead letter(s)"


@pytest.mark.parametrize(
    ("argv", "reason"),
    [
        (["dlq", "list", "--source", "sweeper"], "'sweeper' is not one of 'parser', 'fetcher'"),
        (["dlq", "list", "--kind", "unknown"], "'unknown' is not one of"),
        (["dlq", "list", "--older-than", "a while"], "not a duration: 'a while'"),
        (["dlq"], "Missing command"),
        (["dlq", "show"], "Missing argument 'MESSAGE_ID'"),
        (["aurora-setup", "--db-user", "u", "--cluster", "c"], "one of --role-arn, --stack-name is required"),
        (["aurora-setup", "--db-user", "u", "--cluster", "c", "--role-arn", "a", "--stack-name", "s"], "not allowed"),
        (["migrate", "--dry-run", "--repair"], "--dry-run is not allowed with --repair"),
        (["backfill", "posts", "--batch-size", "many"], "'many' is not a valid integer"),
        (["reindex", "posts", "--rollback", "--drop-old"], "--rollback and --drop-old are two steps"),
    ],
)
def test_misuse_is_a_usage_error_that_names_the_reason(
    argv: list[str], reason: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("Usage: fanout ") and reason in err


@pytest.fixture
def no_database(monkeypatch: pytest.MonkeyPatch) -> None:
    """No database settings at all: a command that connected first would fail on those instead."""
    for name in ("DB_HOST", "DB_PORT", "DB_NAME", "DB_USER", "DB_PASSWORD", "DB_SECRET_ARN"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize("command", ["reconcile", "backfill", "reindex"])
def test_an_unknown_table_is_one_clean_line_naming_it_before_anything_connects(
    no_database: None, command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([command, "nosuchtable"]) == 2
    captured = capsys.readouterr()
    assert captured.err == "fanout: 'nosuchtable' is not a mapped table (mapped: articles, posts, tenant_settings)\n"
    assert captured.out == ""


@pytest.mark.parametrize(("command", "table", "feeds"), [
    ("backfill", "authors", "articles.author (parent)"),
    ("backfill", "article_tags", "articles.tags (link)"),
    ("reconcile", "comments", "articles.comments (child)"),
    ("reindex", "comments", "articles.comments (child)"),
])  # fmt: skip
def test_a_feeding_table_names_the_documents_it_feeds_and_the_command_to_run_instead(
    no_database: None, command: str, table: str, feeds: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([command, table]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"fanout: {table!r} has no documents of its own: it feeds {feeds};")
    assert line.endswith(f"run `fanout {command} articles` instead")


def test_a_backfill_asked_to_publish_events_without_a_bus_is_one_clean_line_before_anything_connects(
    no_database: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("EVENT_BUS_NAME", raising=False)
    assert main(["backfill", "posts", "--events"]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("fanout: --events publishes on the stack's event bus: set EVENT_BUS_NAME")
