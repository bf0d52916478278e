"""What a function's cold start loads and how: the fetcher's AWS clients from botocore alone, never boto3
(fanout.aws), and the handlers' import and first build with the garbage collector paused (fanout.coldstart).

Each check runs a fresh interpreter, as a cold start does: a module one test imported would hide another's import.
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
from decimal import Decimal

import pytest
from boto3.dynamodb.types import DYNAMODB_CONTEXT as BOTO3_CONTEXT

from fanout.coldstart import collector_paused
from fanout.sinks.dynamodb import DYNAMODB_CONTEXT, to_dynamodb_value
from tests.support.fakes import ROOT

# The settings the fetcher is deployed with (OpenSearch signed with SigV4, the template's default; an event bus),
# none of them reached: building the fetch path connects to nothing.
FETCHER_ENV = {
    "AWS_DEFAULT_REGION": "eu-west-1",
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "DB_HOST": "db.internal",
    "DB_NAME": "fanout",
    "DB_USER": "fetcher",
    "DB_TLS": "off",
    "OPENSEARCH_ENDPOINT": "https://search.internal",
    "OPENSEARCH_AUTH": "sigv4",
    "DYNAMODB_TABLE": "fanout-replica",
    "DEAD_LETTER_QUEUE_URL": "https://sqs.eu-west-1.amazonaws.com/123456789012/dlq",
    "FETCH_QUEUE_URL": "https://sqs.eu-west-1.amazonaws.com/123456789012/fetch",
    "EVENT_BUS_NAME": "fanout-events",
}
# A cold start: the handler imported, its fetch path built (the first invocation's _fetcher()), an item's numbers
# and a JSON column's decimals made DynamoDB values (every row has some); then what of boto3 got loaded.
COLD_START = (
    "import json, sys; from decimal import Decimal; import app; fetcher = app._fetcher(); "
    "from fanout.sinks.dynamodb import to_dynamodb_value; from fanout.source.rows import JsonText; "
    "values = [to_dynamodb_value(7), to_dynamodb_value(Decimal('1.5')), to_dynamodb_value(JsonText('[2.25]'))]; "
    "print(json.dumps([[s.name for s in fetcher.sinks], sorted(m for m in sys.modules if m.split('.')[0] in "
    "('boto3', 's3transfer')), 'botocore.session' in sys.modules]))"
)


def test_the_fetchers_cold_start_builds_its_clients_and_signer_without_boto3() -> None:
    # Given the fetcher's environment, its handler directory and the layer's package on the path
    env = {**os.environ, **FETCHER_ENV, "PYTHONPATH": os.pathsep.join([str(ROOT / "fetcher_fn"), *sys.path])}
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE", "DB_SECRET_ARN"):
        env.pop(name, None)
    # When a fresh interpreter imports the handler, builds the fetch path and makes an item's numbers
    done = subprocess.run([sys.executable, "-c", COLD_START], env=env, capture_output=True, text=True, check=True)
    sinks, boto3_modules, botocore_loaded = json.loads(done.stdout)
    # Then every sink was built over botocore's clients, and neither boto3 nor s3transfer was imported for it
    # (a third of the first invocation beyond the import, bench/results/cold_import.md)
    assert sinks == ["opensearch", "dynamodb", "eventbridge"]
    assert botocore_loaded
    assert boto3_modules == []


def test_the_sinks_number_context_is_the_one_boto3_writes_numbers_in() -> None:
    # The DynamoDB sink builds boto3's context rather than importing boto3 for it: the two must not drift
    assert (DYNAMODB_CONTEXT.prec, DYNAMODB_CONTEXT.Emin, DYNAMODB_CONTEXT.Emax) == (
        BOTO3_CONTEXT.prec,
        BOTO3_CONTEXT.Emin,
        BOTO3_CONTEXT.Emax,
    )
    assert {t for t, on in DYNAMODB_CONTEXT.traps.items() if on} == {t for t, on in BOTO3_CONTEXT.traps.items() if on}
    # and a number of 39 significant digits is still kept as its exact digits, one of 38 as a number
    assert to_dynamodb_value(Decimal("1" * 39)) == "1" * 39
    assert to_dynamodb_value(Decimal("1" * 38)) == Decimal("1" * 38)


# The collections the collector started while the layer's modules were being imported and while the first
# invocation built what it reuses (a frame of the layer's package on the stack), the objects frozen after each,
# and whether the collector runs afterwards.
COLLECTIONS = (
    "import gc, json, sys; passes = {{'imported': 0, 'built': 0}}; stage = ['imported']\n"
    "def started(phase, info):\n"
    "    frame = sys._getframe(1)\n"
    "    while frame is not None and not (phase == 'start' and '/fanout/' in frame.f_code.co_filename\n"
    "            and not frame.f_code.co_filename.endswith('coldstart.py')):\n"
    "        frame = frame.f_back\n"
    "    passes[stage[0]] += frame is not None\n"
    "gc.callbacks.append(started)\n"
    "import app; stage[0] = 'built'; frozen = [gc.get_freeze_count()]; app.{build}()\n"
    "frozen.append(gc.get_freeze_count() - frozen[0])\n"
    "print(json.dumps([passes['imported'], passes['built'], *frozen, gc.isenabled()]))"
)


@pytest.mark.parametrize(("handler", "build"), [("fetcher_fn", "_fetcher"), ("parser_fn", "_dependencies")])
def test_a_handlers_cold_start_runs_no_collection_and_leaves_the_collector_on(handler: str, build: str) -> None:
    # Given a function's environment and its handler directory on the path
    env = {**os.environ, **FETCHER_ENV, "PYTHONPATH": os.pathsep.join([str(ROOT / handler), *sys.path])}
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE", "DB_SECRET_ARN"):
        env.pop(name, None)
    # When a fresh interpreter imports the handler and builds what its first invocation builds
    code = COLLECTIONS.format(build=build)
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    imported, built, frozen_by_import, frozen_by_build, enabled = json.loads(done.stdout)
    # Then the collector started no pass over the cold start's objects while they were made (hundreds of modules:
    # without the pause it runs dozens), they were frozen out of its passes (tens of thousands of objects: resuming
    # with them young would start a pass over them all), and it runs again for what the invocations allocate
    assert (imported, built) == (0, 0)
    assert frozen_by_import > 20_000
    assert frozen_by_build > 1_000
    assert enabled


def test_the_collector_runs_again_after_a_failed_cold_start_and_stays_off_where_it_was_off() -> None:
    assert gc.isenabled()
    frozen = gc.get_freeze_count()
    with pytest.raises(RuntimeError), collector_paused():
        assert not gc.isenabled()
        raise RuntimeError("a setting is missing")
    assert gc.isenabled()
    assert gc.get_freeze_count() == frozen  # a failed cold start freezes nothing
    gc.disable()
    try:
        with collector_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()
