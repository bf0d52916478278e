"""Operator output cannot be forged: outside data (names, keys, reasons from payloads) is shown escaped."""

from __future__ import annotations

import json
import unicodedata

import pytest

from fanout_cli.commands.dlq import _line
from fanout_cli.commands.status import render
from fanout_cli.dead_letters.queue import QueueDepth
from fanout_cli.operator_text import shown
from fanout_cli.replication_status import log_lines, summarize
from tests.support.dead_letters import rejected
from tests.support.log_events import T0, event

FORGED = "posts\nfake_table: received 999, applied 999\r\x1b[2K\u202eevil\u2028x"


def assert_plain(text: str, lines: int) -> None:
    """``lines`` lines and nothing a terminal would act on (controls, bidi overrides, separators)."""
    assert len(text.split("\n")) == lines
    bad = [c for c in text.replace("\n", "") if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp")]
    assert bad == []


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("posts", "posts"),
        ("tenant_settings", "tenant_settings"),
        ("a\nb", "a\\x0ab"),
        ("a\rb\x1b[31m", "a\\x0db\\x1b[31m"),
        ("\u202eabc\u2066", "\\u202eabc\\u2066"),
        ("line\u2028sep", "line\\u2028sep"),
        ("back\\x0a", "back\\\\x0a"),  # a backslash is escaped too: "\x0a" in the output always means LF
        ("ünïcødé 投稿 🙂", "ünïcødé 投稿 🙂"),  # printable text is shown as it is
    ],
)
def test_shown_escapes_what_a_terminal_would_act_on_and_keeps_the_rest(raw: str, expected: str) -> None:
    assert shown(raw) == expected


def test_status_shows_a_forged_table_name_neither_as_a_table_nor_raw() -> None:
    # Given a dead letter whose payload names a forged table, and a log line with a forged key
    letter = rejected("parser", {"v": 1, "action": "update", "table": FORGED, "pk": {"id": 1}}, message_id="m-x")
    lines = [
        event(
            0,
            message="change applied",
            table="posts",
            sink="opensearch",
            key=FORGED,
            version=1,
            lag_ms=5.0,
            correlation_id="c\u202e1",
            outcome="written",
        )
    ]
    # When the report is built and rendered
    report = summarize(log_lines(lines), [letter], QueueDepth(1, 0, 0), ["posts"], window_seconds=60, now_ms=T0)
    text = render(report)
    # Then the forged name is counted as naming no mapped table, and every line is one of the report's own
    assert sorted(report["tables"]) == ["_unknown", "posts"]
    assert report["tables"]["_unknown"]["dead_letters"] == 1
    assert_plain(text, lines=4 + 3 + 2)  # header (4, with the change log), posts (3: counts, last, lag), _unknown (2)
    assert "key=posts\\x0afake_table" in text


def test_dlq_list_shows_each_letter_on_its_two_lines_whatever_its_record_holds() -> None:
    letter = rejected("fetcher", {"changes": [{"table": FORGED}]}, reason=f"table: {FORGED!s} is not mapped")
    text = _line(letter)
    assert_plain(text, lines=2)
    assert "posts\\x0afake_table" in text and "\\u202eevil" in text
    assert json.loads(json.dumps(letter.summary()))["tables"] == [FORGED]  # --json keeps the data exact
