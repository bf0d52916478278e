"""The OpenSearch sink writes every generation of a table's write set, reads the set at most once per TTL, and
`fanout check` tells what only a reindex can change (fanout.sinks.generations, fanout.operations.index_drift)."""

from __future__ import annotations

from typing import Any

from opensearchpy.exceptions import TransportError

from fanout.model.change import Change
from fanout.model.mapping import default_mappings
from fanout.operations.index_drift import mapping_drifts, settings_drifts
from fanout.sinks import Outcome, SinkError
from fanout.sinks.generations import generation_number
from fanout.sinks.opensearch import OpenSearchSink
from fanout.source.rows import RowState
from tests.support.fakes import FakeOpenSearch

POSTS = default_mappings().tables["posts"]


def row(key: int, title: str) -> dict[str, Any]:
    return {"id": key, "title": title, "body": "b", "author": "a", "status": "published", "updated_at": None}


def write(sink: OpenSearchSink, key: int, title: str | None, version: int) -> Outcome | Exception:
    state = RowState(None if title is None else row(key, title), version)
    return sink.apply_batch(POSTS, [(Change("posts", (("id", key),), "update", 1), state)])[0]


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def two_generations(client: FakeOpenSearch) -> None:
    """posts.g1 searched, posts.g2 being built: both in the write set."""
    client.indices.create(index="posts.g1", body={"aliases": {"posts": {}, "posts.write": {}}})
    client.indices.create(index="posts.g2", body={"aliases": {"posts.write": {}}})


def test_every_row_goes_to_each_generation_of_the_write_set_version_gated_in_each() -> None:
    client = FakeOpenSearch()
    two_generations(client)
    sink = OpenSearchSink(client)

    assert write(sink, 1, "first", 100) is Outcome.WRITTEN
    assert client.docs[("posts.g1", "1")].source == client.docs[("posts.g2", "1")].source
    # an older state is stale in both; a delete leaves a tombstone in both
    assert write(sink, 1, "older", 50) is Outcome.STALE
    assert write(sink, 1, None, 200) is Outcome.DELETED
    assert client.docs[("posts.g1", "1")].source is None and client.docs[("posts.g2", "1")].version == 200


def test_a_row_newer_in_one_generation_only_is_written_where_it_is_not_stale() -> None:
    client = FakeOpenSearch()
    two_generations(client)
    client.index(
        index="posts.g2", id="1", body={"title": "copied"}, params={"version": 300, "version_type": "external"}
    )
    sink = OpenSearchSink(client)

    assert write(sink, 1, "live", 200) is Outcome.WRITTEN  # g1 took it; g2 already holds a newer read
    assert client.docs[("posts.g1", "1")].source is not None and client.docs[("posts.g2", "1")].version == 300


def test_the_write_set_is_read_once_per_ttl_and_again_after_a_failed_write() -> None:
    client, clock = FakeOpenSearch(), Clock()
    client.indices.create(index="posts.g1", body={"aliases": {"posts": {}, "posts.write": {}}})
    sink = OpenSearchSink(client, targets_ttl=10.0, clock=clock)
    write(sink, 1, "a", 100)
    # When a reindex adds a generation, a fetcher keeps writing what it read until its copy is ttl old
    client.indices.create(index="posts.g2", body={"aliases": {"posts.write": {}}})
    clock.now = 9.9
    write(sink, 2, "b", 100)
    assert ("posts.g2", "2") not in client.docs
    clock.now = 10.0
    write(sink, 3, "c", 100)
    assert ("posts.g2", "3") in client.docs
    assert client.indices.alias_reads == ["posts.write", "posts.write"]
    # And a failed write makes it read the set again at once (an index may have gone)
    client.fail_with = TransportError(503, "unavailable", "")
    assert isinstance(write(sink, 4, "d", 100), SinkError)
    client.fail_with = None
    write(sink, 4, "d", 100)
    assert client.indices.alias_reads == ["posts.write", "posts.write", "posts.write"]


def test_a_pinned_sink_writes_only_the_generation_it_fills() -> None:
    client = FakeOpenSearch()
    two_generations(client)

    write(OpenSearchSink(client, pinned={"posts": "posts.g2"}), 1, "copied", 100)

    assert ("posts.g2", "1") in client.docs and ("posts.g1", "1") not in client.docs
    assert client.indices.alias_reads == []


def test_a_concrete_index_from_before_aliases_is_written_as_it_is() -> None:
    client = FakeOpenSearch()
    client.indices.create(index="posts", body={})

    write(OpenSearchSink(client), 1, "a", 100)

    assert ("posts", "1") in client.docs and client.indices.create_calls == ["posts"]
    assert generation_number("posts", "posts.g12") == 12 and generation_number("posts", "posts") is None


def test_check_says_reindex_for_a_type_or_analyzer_change_and_in_place_for_a_new_field() -> None:
    live = {"author": {"type": "text", "fields": {"keyword": {"type": "keyword"}}}, "title": {"type": "text"}}
    declared = {
        "author": {"type": "keyword"},
        "title": {"type": "text", "analyzer": "english"},
        "tags": {"type": "keyword"},
    }

    lines = [d.line() for d in mapping_drifts("posts", "posts.g1", declared, live)]

    assert lines == [
        "posts.g1 field author: is 'text' in the index, 'keyword' in tables.json (OpenSearch cannot change a "
        "field's type); fix: run fanout reindex posts",
        "posts.g1 field title: analyzer is None in the index, 'english' in tables.json (not changeable in place); "
        "fix: run fanout reindex posts",
        "posts.g1 field tags: declared in tables.json but not in the index; fix: PUT /posts.g1/_mapping adds it in "
        "place (documents written before lack it), or run fanout reindex posts",
    ]
    assert mapping_drifts("posts", "posts.g1", {"author": {"type": "text"}}, live) == []


def test_check_says_reindex_for_shards_and_analysis_and_in_place_for_replicas() -> None:
    live = {"index.number_of_shards": "1", "index.number_of_replicas": "1", "index.gc_deletes": "1h"}
    analysis = {"analyzer": {"a": {"type": "standard"}}}
    declared = {"number_of_shards": 2, "index": {"number_of_replicas": 0}, "analysis": analysis}

    drifts = {d.subject: d.fix for d in settings_drifts("posts", "posts.g1", declared, live)}

    assert drifts["posts.g1 setting number_of_shards"] == "run fanout reindex posts"
    assert drifts["posts.g1 setting number_of_replicas"].startswith("PUT /posts.g1/_settings applies it in place")
    assert [s for s in drifts if "analysis" in s] and all(
        drifts[s] == "run fanout reindex posts" for s in drifts if "analysis" in s
    )
    assert settings_drifts("posts", "posts.g1", {"number_of_shards": 1}, live) == []
