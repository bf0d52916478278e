"""Structured logging (one JSON object per line) and tracing that stays off outside Lambda."""

from __future__ import annotations

import json
import logging

import pytest

from fanout import observability
from fanout.observability import enable_tracing, log


@pytest.fixture
def fresh_logger(monkeypatch: pytest.MonkeyPatch) -> None:
    # The handler binds sys.stdout when it is created; drop any made earlier so the
    # next log() creates one writing to this test's captured stdout.
    monkeypatch.setattr(logging.getLogger("fanout"), "handlers", [])
    monkeypatch.delenv("LOG_LEVEL", raising=False)
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "fanout-dev-ParserFunction")


@pytest.mark.usefixtures("fresh_logger")
def test_log_writes_one_json_line_with_the_fields_at_the_top_level(capsys: pytest.CaptureFixture[str]) -> None:
    # When
    log(logging.WARNING, "change rejected", correlation_id="req-1", field="pk.id", key="漢字|😀")

    # Then
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1
    entry = json.loads(lines[0])
    assert entry["message"] == "change rejected"
    assert entry["level"] == "WARNING"
    assert entry["service"] == "fanout"
    assert entry["function"] == "fanout-dev-ParserFunction"
    assert (entry["correlation_id"], entry["field"], entry["key"]) == ("req-1", "pk.id", "漢字|😀")
    assert entry["time"].endswith("Z")


@pytest.mark.usefixtures("fresh_logger")
def test_log_writes_values_json_cannot_hold_as_text(capsys: pytest.CaptureFixture[str]) -> None:
    log(logging.INFO, "change applied", version=10**20, lag_ms=1.5, error=ValueError("boom"))

    entry = json.loads(capsys.readouterr().out)
    assert (entry["version"], entry["lag_ms"], entry["error"]) == (10**20, 1.5, "boom")


@pytest.mark.usefixtures("fresh_logger")
def test_each_call_is_its_own_line(capsys: pytest.CaptureFixture[str]) -> None:
    log(logging.INFO, "first", n=1)
    log(logging.ERROR, "second\nwith a newline", n=2)

    lines = capsys.readouterr().out.splitlines()
    assert [json.loads(line)["n"] for line in lines] == [1, 2]


@pytest.mark.usefixtures("fresh_logger")
def test_debug_lines_are_dropped_at_the_default_level(capsys: pytest.CaptureFixture[str]) -> None:
    log(logging.DEBUG, "noise")

    assert capsys.readouterr().out == ""


def test_tracing_stays_off_without_an_xray_daemon(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_XRAY_DAEMON_ADDRESS", raising=False)
    monkeypatch.setenv("_X_AMZN_TRACE_ID", "Root=1-5759e988-bd862e3fe1be46a994272793")
    monkeypatch.setattr(observability, "_tracing_ready", False)

    assert enable_tracing() is False


def test_tracing_stays_off_outside_an_invocation(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_XRAY_DAEMON_ADDRESS", "169.254.79.129:2000")
    monkeypatch.delenv("_X_AMZN_TRACE_ID", raising=False)
    monkeypatch.setattr(observability, "_tracing_ready", False)

    assert enable_tracing() is False
