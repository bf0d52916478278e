"""The trigger generator's output as V006–V009 had it: one ring per statement, before V010's ring throttle.

The tests that regenerate an applied migration (an applied file never changes) compare it with today's generator
output rewritten by :func:`ring_per_statement`: the header's ring sentence, and each ring block in the form the
generator wrote before the throttle (``@fanout_rung_at``, no ring token).
"""

from __future__ import annotations

import re

# Today's header lines about the ring, and what V006–V009 said instead.
_HEADER = (
    (
        "change log, a ring at most once per\n-- statement and once a second per schema.\n",
        "change log, one ring per statement.\n",
    ),
    (
        "-- change). The statement's first row then rings the parser with lambda_async, unless a\n"
        "-- session rang in this second or a drainer holds the drain lock (a drainer keeps it at\n"
        "-- least a second after the log is empty, so it takes what the throttle held back); a\n"
        "-- failing ring never fails the statement (the sweeper drains what no ring announced).\n"
        "-- New triggers are created before the earlier ones are dropped, so no write goes\n"
        "-- uncaptured in between.\n",
        "-- change). The statement's first row then rings the parser with lambda_async, unless a\n"
        "-- drainer holds the drain lock; a failing ring never fails the statement (the sweeper\n"
        "-- drains what no ring announced). New triggers are created before the earlier ones are\n"
        "-- dropped, so no write goes uncaptured in between.\n",
    ),
)

# One throttled ring block (fanout.capture.trigger_sql.ring_sql), at any indent.
_THROTTLED_RING = re.compile(
    r"(?P<i1>[ ]*)IF NOT \(@fanout_statement_at <=> CAST\(NOW\(6\) AS CHAR\)\) THEN\n"
    r"(?P<i2>[ ]*)SET @fanout_statement_at = CAST\(NOW\(6\) AS CHAR\);\n"
    r"[ ]*BEGIN\n"
    r"(?P<i3>[ ]*)DECLARE fanout_token VARCHAR\(64\) DEFAULT CONCAT\(\n"
    r"[ ]*'fanout_ring:', FLOOR\(UNIX_TIMESTAMP\(SYSDATE\(6\)\) / [\d.]+\), ':', MD5\(DATABASE\(\)\)\n"
    r"[ ]*\);\n"
    r"[ ]*DECLARE fanout_ring_failed BOOLEAN DEFAULT FALSE;\n"
    r"[ ]*DECLARE CONTINUE HANDLER FOR SQLEXCEPTION\n"
    r"[ ]*BEGIN\n"
    r"(?P<i4>[ ]*)GET DIAGNOSTICS CONDITION 1 @fanout_ring_error = MESSAGE_TEXT;\n"
    r"[ ]*SET fanout_ring_failed = TRUE;\n"
    r"[ ]*END;\n"
    r"[ ]*IF\n"
    r"[ ]*NOT \(@fanout_ring_token <=> fanout_token\)\n"
    r"[ ]*AND (?P<free>IS_FREE_LOCK\(.*\)) = 1\n"
    r"[ ]*THEN\n"
    r"[ ]*IF GET_LOCK\(fanout_token, 0\) = 1 THEN\n"
    r"[ ]*IF @fanout_ring_token IS NOT NULL THEN\n"
    r"[ ]*DO RELEASE_LOCK\(@fanout_ring_token\);\n"
    r"[ ]*END IF;\n"
    r"[ ]*SET @fanout_ring_token = fanout_token;\n"
    r"[ ]*SELECT (?P<call>lambda_async\('\$\{parser_function_arn\}', JSON_OBJECT\()\n"
    r"[ ]*(?P<fields>'v', .*,)\n"
    r"[ ]*'ts', UNIX_TIMESTAMP\(SYSDATE\(6\)\)\n"
    r"[ ]*\)\) INTO @fanout_invoke_result;\n"
    r"[ ]*IF fanout_ring_failed THEN\n"
    r"[ ]*DO RELEASE_LOCK\(fanout_token\);\n"
    r"[ ]*SET @fanout_ring_token = NULL;\n"
    r"[ ]*END IF;\n"
    r"[ ]*END IF;\n"
    r"[ ]*END IF;\n"
    r"[ ]*END;\n"
    r"[ ]*END IF;\n"
)


def _per_statement(match: re.Match[str]) -> str:
    i1, i2, i3, i4 = match["i1"], match["i2"], match["i3"], match["i4"]
    i5 = i4 + "    "
    return (
        f"{i1}IF NOT (@fanout_rung_at <=> CAST(NOW(6) AS CHAR)) THEN\n"
        f"{i2}SET @fanout_rung_at = CAST(NOW(6) AS CHAR);\n"
        f"{i2}BEGIN\n"
        f"{i3}DECLARE CONTINUE HANDLER FOR SQLEXCEPTION\n"
        f"{i4}GET DIAGNOSTICS CONDITION 1 @fanout_ring_error = MESSAGE_TEXT;\n"
        f"{i3}IF {match['free']} = 1 THEN\n"
        f"{i4}SELECT {match['call']}\n"
        f"{i5}{match['fields']}\n"
        f"{i5}'ts', UNIX_TIMESTAMP(SYSDATE(6))\n"
        f"{i4})) INTO @fanout_invoke_result;\n"
        f"{i3}END IF;\n"
        f"{i2}END;\n"
        f"{i1}END IF;\n"
    )


def ring_per_statement(sql: str) -> str:
    """``sql`` (generated today) as the generator wrote it before V010: every ring block and the header's ring
    sentences in their per-statement form. Fails if ``sql`` has no ring to rewrite."""
    for today, before in _HEADER:
        sql = sql.replace(today, before)
    rewritten, count = _THROTTLED_RING.subn(_per_statement, sql)
    assert count, "no throttled ring in the generated SQL"
    return rewritten
