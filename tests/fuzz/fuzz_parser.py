"""Coverage-guided fuzzing of the parser's input path with atheris (libFuzzer for Python).

    python tests/fuzz/fuzz_parser.py -runs=50000 -max_total_time=20 CORPUS_DIR

Each input becomes a trigger payload in one of four ways: raw bytes, text
(undecodable bytes become lone surrogates), the JSON value the Lambda runtime
would decode from it, or a valid payload with fuzzed field values. It goes
through the drainer's hand-on of a claimed change-log row (``hand_on``) with the real
rejection recorder over a fake SQS that refuses what SQS refuses. Any exception is a crash, and so is an
outcome other than "forwarded" or "rejected and recorded".
tests/unit/test_parser_fuzzing.py runs this, bounded, in ``make test``; the
seed corpus is the events/ files.
"""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path
from typing import Any

import atheris

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "layers" / "common"), str(ROOT)]  # run as a script, by path

with atheris.instrument_imports(include=["fanout"]):
    from fanout.capture.change_log import hand_on
    from fanout.model.mapping import parse_mappings
    from fanout.pipeline.rejects import QueueRejectRecorder

from tests.support.fakes import FakeSQSClient, RecordingQueue  # noqa: E402 - after the path set-up

MAPPINGS = parse_mappings(
    {
        "tables": {
            "posts": {"primary_key": [{"column": "id", "type": "int"}]},
            "tags": {"primary_key": [{"column": "name", "type": "string"}], "capture": ["update", "delete"]},
            "comments": {"primary_key": [{"column": "tenant", "type": "string"}, {"column": "id", "type": "int"}]},
        }
    }
)
TABLES = ["posts", "tags", "comments", "POSTS", "", "posts`; --"]
ACTIONS = ["insert", "update", "delete", "UPDATE", "upsert", ""]


def fuzzed_value(fdp: atheris.FuzzedDataProvider) -> Any:
    kind = fdp.ConsumeIntInRange(0, 7)
    if kind == 0:
        return fdp.ConsumeInt(fdp.ConsumeIntInRange(1, 80))
    if kind == 1:
        return fdp.ConsumeFloat()
    if kind == 2:
        return fdp.ConsumeUnicode(fdp.ConsumeIntInRange(0, 600))  # may hold lone surrogates
    if kind == 3:
        return fdp.ConsumeBool()
    if kind == 4:
        return None
    if kind == 5:
        return [fuzzed_value(fdp) for _ in range(fdp.ConsumeIntInRange(0, 3))]
    if kind == 6:
        return {fdp.ConsumeUnicode(8): fuzzed_value(fdp) for _ in range(fdp.ConsumeIntInRange(0, 3))}
    return fdp.ConsumeIntInRange(-(2**63), 2**64 - 1)


def structured_payload(fdp: atheris.FuzzedDataProvider) -> dict[str, Any]:
    table = fdp.PickValueInList(TABLES)
    payload: dict[str, Any] = {
        "v": fdp.PickValueInList([1, 1, 1, 0, 2, "1", True]),
        "action": fdp.PickValueInList(ACTIONS),
        "table": table,
        "ts": fdp.PickValueInList([1764240000.5, 1764240000]) if fdp.ConsumeBool() else fuzzed_value(fdp),
    }
    if table == "tags":
        payload["pk"] = {"name": fdp.ConsumeUnicode(fdp.ConsumeIntInRange(0, 600))}
    elif table == "comments":
        payload["pk"] = {"tenant": fdp.ConsumeUnicode(40), "id": fdp.ConsumeInt(9)}
    else:
        payload["pk"] = {"id": fdp.ConsumeInt(9)} if fdp.ConsumeBool() else fuzzed_value(fdp)
    if fdp.ConsumeBool():
        payload["old_pk"] = fuzzed_value(fdp) if fdp.ConsumeBool() else payload["pk"]
    if fdp.ConsumeIntInRange(0, 4) == 0:
        payload[fdp.ConsumeUnicode(10)] = fuzzed_value(fdp)
    return payload


def payload_of(data: bytes) -> Any:
    if not data:
        return data
    mode, rest = data[0] % 4, data[1:]
    if mode == 0:
        return rest
    if mode == 1:
        return rest.decode("utf-8", "surrogateescape")
    if mode == 2:
        try:
            return json.loads(rest)
        except (ValueError, RecursionError):
            return rest
    return structured_payload(atheris.FuzzedDataProvider(rest))


def test_one_input(data: bytes) -> None:
    payload = payload_of(data)
    forward, sqs = RecordingQueue(), FakeSQSClient()
    forwarded, rejected = hand_on([(1, payload)], MAPPINGS, forward, QueueRejectRecorder(sqs, "dlq", "parser"), "fuzz")
    if forwarded:
        if not (len(forward.batches) == 1 and not sqs.messages):
            raise AssertionError(f"accepted but not forwarded exactly once: {forwarded}")
        return
    if not (rejected == 1 and len(sqs.messages) == 1 and not forward.batches):
        raise AssertionError(f"rejected but not recorded exactly once: {rejected}")
    if not json.loads(sqs.messages[0]["MessageBody"])["reason"].startswith("change log row 1: "):
        raise AssertionError("the dead-letter record is not the record of this rejection")


def main() -> None:
    sys.stdout = io.TextIOWrapper(open("/dev/null", "wb"), write_through=True)  # the log lines (stderr: libFuzzer's)
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
