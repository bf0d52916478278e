"""The burst's OpenSearch-only orphans: a delete's tombstone that did not last.

A versioned delete leaves a tombstone for ``index.gc_deletes``; a write of an older version that lands later is
refused (409) while it lasts, and brings the deleted document back once it is gone. DynamoDB keeps its
tombstones for days, OpenSearch's default is 60 s: about the fetcher's timeout, and less than a write read
before a delete can lag it under a burst (a retried or delayed ``_bulk``). The sink set 1 h only on indices it
created itself, once per warm fetcher; an index dropped under a warm fetcher (a reset between runs, an
operator) is created again by OpenSearch on the next write of any kind, a delete too, with the default, and so
is an index someone else created. These tests run against the real engine (local/opensearch.py).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from fanout.model.change import Change
from fanout.model.mapping import parse_mappings
from fanout.sinks import Outcome
from fanout.sinks.generations import TEMPLATE_PREFIX, generation_name
from fanout.sinks.opensearch import DEFAULT_GC_DELETES, OpenSearchSink, make_client
from fanout.source.rows import RowState
from tests.support.indices import delete_index
from tests.support.mappings import in_index
from tests.support.waiting import wait_until

POSTS = parse_mappings({"tables": {"posts": {"primary_key": [{"column": "id"}]}}}).tables["posts"]


@pytest.fixture
def index(opensearch_endpoint: str) -> Iterator[tuple[Any, str]]:
    client = make_client(opensearch_endpoint)
    name = f"tombstones-{uuid.uuid4().hex[:8]}"
    yield client, name
    delete_index(client, name)
    client.indices.delete_index_template(name=f"{TEMPLATE_PREFIX}{name}", ignore=[404])


def gc_deletes(client: Any, name: str) -> str:
    # ``name``: an index, or the alias of the one generation it points at
    (answer,) = client.indices.get_settings(index=name, name="index.gc_deletes", include_defaults=True).values()
    return str(
        answer.get("settings", {}).get("index", {}).get("gc_deletes") or answer["defaults"]["index"]["gc_deletes"]
    )


def write(sink: OpenSearchSink, name: str, key: int, version: int, row: dict[str, Any] | None) -> Outcome:
    mapping = in_index(POSTS, name)
    change = Change("posts", (("id", key),), "update", version, "req-tombstones")
    [outcome] = sink.apply_batch(mapping, [(change, RowState(row, version))])
    assert isinstance(outcome, Outcome), outcome
    return outcome


def test_an_index_dropped_under_a_warm_sink_comes_back_keeping_tombstones_for_an_hour(
    index: tuple[Any, str],
) -> None:
    client, name = index
    # Given a warm sink that has made its index ready, and the index dropped meanwhile (a reset, an operator)
    sink = OpenSearchSink(client)
    write(sink, name, 1, 100, {"id": 1, "title": "first"})
    generation = generation_name(name, 1)  # the index behind the alias, in the sink's cached write set
    client.indices.delete(index=generation)

    # When the next write is a delete: OpenSearch creates the missing index for it, from the templates
    assert write(sink, name, 2, 200, None) is Outcome.DELETED

    # Then that index keeps deletes' tombstones for the sink's hour, not the engine's 60 s default, and a late
    # write of an older version is refused
    assert gc_deletes(client, generation) == DEFAULT_GC_DELETES
    client.indices.refresh(index=generation)
    assert write(sink, name, 2, 150, {"id": 2, "title": "late"}) is Outcome.STALE


def test_an_existing_index_keeping_tombstones_briefly_is_raised_to_the_sinks_lifetime(index: tuple[Any, str]) -> None:
    client, name = index
    # Given an index someone else created, with the engine's default tombstone lifetime
    client.indices.create(index=name, body={"settings": {"index": {"number_of_replicas": 0}}})
    assert gc_deletes(client, name) == "60s"

    # When a sink resolves where the table's rows go (a concrete index from before aliases is written as is)
    assert OpenSearchSink(client).target_indices(in_index(POSTS, name)) == (name,)

    # Then it keeps tombstones for the sink's lifetime (a dynamic setting; nothing else of the index changes)
    assert gc_deletes(client, name) == DEFAULT_GC_DELETES


def test_an_index_keeping_tombstones_longer_is_left_as_it_is(index: tuple[Any, str]) -> None:
    client, name = index
    client.indices.create(index=name, body={"settings": {"index": {"gc_deletes": "6h", "number_of_replicas": 0}}})

    OpenSearchSink(client).target_indices(in_index(POSTS, name))

    assert gc_deletes(client, name) == "6h"


def test_a_tombstone_that_expired_lets_a_late_older_write_bring_the_document_back(index: tuple[Any, str]) -> None:
    # The mechanism itself, with a lifetime of 0 s standing in for a minute gone by: a late write of a version
    # older than the delete creates the document again (an orphan), where a kept tombstone refuses it (above).
    client, name = index
    sink = OpenSearchSink(client, gc_deletes="0s")
    assert write(sink, name, 3, 200, None) is Outcome.DELETED

    def late_write_lands() -> bool:
        # tombstones older than gc_deletes are pruned on refresh (the engine prunes at most every gc_deletes/4,
        # and not within the tombstone's own millisecond); a late write refused meanwhile changes nothing
        client.indices.refresh(index=name)
        client.indices.flush(index=name)
        return write(sink, name, 3, 100, {"id": 3, "title": "resurrected"}) is Outcome.WRITTEN

    wait_until("the late older write to land once the tombstone is pruned", late_write_lands, timeout=30)
