"""The project's OpenSearch stand-in (local/opensearch_server.py), exercised through opensearch-py
and, where the client hides details (status codes, framing), through raw HTTP.

By default each test module run starts the stand-in in-process on a free port. When
``OPENSEARCH_ENDPOINT`` is set (e.g. ``http://localhost:9200``, a real OpenSearch 2.x with security
off), the same tests run against it instead, so they assert only documented OpenSearch behaviour,
use unique index names and delete what they create.
"""

from __future__ import annotations

import base64
import http.client
import importlib.util
import json
import os
import re
import signal
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

import pytest
from opensearchpy import OpenSearch
from opensearchpy.exceptions import ConflictError, NotFoundError, RequestError, TransportError

SERVER_PATH = Path(__file__).resolve().parents[2] / "local" / "opensearch_server.py"
EXTERNAL_ENDPOINT = os.environ.get("OPENSEARCH_ENDPOINT")
# Behaviour that real OpenSearch only shows eventually (tombstone pruning is lazy) is asserted
# only against the stand-in, which applies index.gc_deletes exactly.
LOCAL = not EXTERNAL_ENDPOINT
JSON = "application/json"


def load_server_module() -> ModuleType:
    """Import local/opensearch_server.py by path: ``local`` need not be a package."""
    spec = importlib.util.spec_from_file_location("fanout_local_opensearch_server", SERVER_PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    if EXTERNAL_ENDPOINT:
        yield EXTERNAL_ENDPOINT.rstrip("/")
        return
    server = load_server_module().start_server("127.0.0.1", 0)
    try:
        yield server.url
    finally:
        server.shutdown()


@pytest.fixture(scope="module")
def client(endpoint: str) -> Iterator[OpenSearch]:
    opensearch = OpenSearch(hosts=[endpoint], timeout=10, verify_certs=False, ssl_show_warn=False)
    yield opensearch
    opensearch.close()


@pytest.fixture
def new_index(client: OpenSearch) -> Iterator[Callable[[], str]]:
    """Hands out unique index names and deletes those indices afterwards."""
    names: list[str] = []

    def make() -> str:
        names.append(f"fanout-test-{uuid.uuid4().hex[:12]}")
        return names[-1]

    yield make
    for name in names:
        try:
            client.indices.delete(index=name)
        except NotFoundError:
            pass


def connect(endpoint: str) -> http.client.HTTPConnection:
    parts = urlsplit(endpoint)
    if parts.scheme == "https":
        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        return http.client.HTTPSConnection(parts.hostname or "", parts.port, timeout=10, context=context)
    return http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)


def auth_headers(endpoint: str) -> dict[str, str]:
    parts = urlsplit(endpoint)
    if not parts.username:
        return {}
    token = base64.b64encode(f"{parts.username}:{parts.password or ''}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def raw(
    endpoint: str, method: str, path: str, body: bytes | dict | None = None, content_type: str = JSON
) -> tuple[int, Any]:
    """One HTTP request on its own connection; returns (status, parsed JSON body or None)."""
    headers = auth_headers(endpoint)
    data = json.dumps(body).encode() if isinstance(body, dict) else body
    if data is not None:
        headers["Content-Type"] = content_type
    conn = connect(endpoint)
    try:
        conn.request(method, path, body=data, headers=headers)
        response = conn.getresponse()
        payload = response.read()
    finally:
        conn.close()
    return response.status, json.loads(payload) if payload else None


def ids(response: dict) -> set[str]:
    return {hit["_id"] for hit in response["hits"]["hits"]}


def item_status(item: dict) -> int:
    return int(next(iter(item.values()))["status"])


# ------------------------------------------------------------------------------ cluster and routes


def test_info_identifies_an_opensearch_cluster(client: OpenSearch, endpoint: str) -> None:
    # When the client asks for the cluster info
    info = client.info()
    # Then it is an OpenSearch distribution with a semantic version, and HEAD / answers too
    assert info["version"]["distribution"] == "opensearch"
    assert re.fullmatch(r"\d+\.\d+\.\d+", info["version"]["number"])
    assert info["tagline"]
    assert client.ping() is True
    assert raw(endpoint, "HEAD", "/") == (200, None)


def test_unknown_route_and_wrong_method_are_rejected(endpoint: str, new_index: Callable[[], str]) -> None:
    name = new_index()
    # When a path no handler serves is requested, or a known path with the wrong method
    unknown_status, unknown = raw(endpoint, "GET", f"/{name}/_no_such_api/1")
    wrong_status, wrong = raw(endpoint, "PUT", f"/{name}/_doc", {"a": 1})
    # Then OpenSearch answers 400 / 405 with an error string naming the uri and method
    assert unknown_status in (400, 405) and "uri [" in unknown["error"]
    assert wrong_status == 405 and "PUT" in wrong["error"]


def test_invalid_json_and_unsupported_content_type_are_rejected(endpoint: str, new_index: Callable[[], str]) -> None:
    name = new_index()
    # When a document body is not JSON
    status, body = raw(endpoint, "PUT", f"/{name}/_doc/1", b"{not json")
    # Then it is a 400 with an error envelope
    assert status == 400 and body["status"] == 400 and body["error"]["type"]
    # When the body is sent as text/plain, Then OpenSearch refuses the content type
    status, body = raw(endpoint, "PUT", f"/{name}/_doc/1", b'{"a": 1}', content_type="text/plain")
    assert status == 406


# ---------------------------------------------------------------------------------- index admin


def test_create_index_with_mappings_and_settings_then_get_shows_them(
    client: OpenSearch, new_index: Callable[[], str]
) -> None:
    name = new_index()
    mappings = {
        "properties": {
            "sku": {"type": "keyword"},
            "title": {"type": "text"},
            "price": {"type": "double"},
            "updated_at": {"type": "date"},
        }
    }
    settings = {"index": {"number_of_shards": 1, "number_of_replicas": 0, "gc_deletes": "1h"}}
    # When the index is created with settings and mappings
    created = client.indices.create(index=name, body={"settings": settings, "mappings": mappings})
    # Then it is acknowledged and GET shows both, settings as strings
    assert created == {"acknowledged": True, "shards_acknowledged": True, "index": name}
    described = client.indices.get(index=name)[name]
    assert described["mappings"] == mappings
    assert described["settings"]["index"]["number_of_shards"] == "1"
    assert described["settings"]["index"]["number_of_replicas"] == "0"
    assert described["settings"]["index"]["gc_deletes"] == "1h"
    assert described["aliases"] == {}
    assert client.indices.get_mapping(index=name)[name]["mappings"] == mappings
    assert client.indices.exists(index=name) is True


def test_settings_given_flat_or_nested_are_the_same_setting(client: OpenSearch, new_index: Callable[[], str]) -> None:
    name = new_index()
    # Given an index created with a flat setting key, and one without the "index." prefix
    client.indices.create(index=name, body={"settings": {"index.gc_deletes": "30s", "number_of_replicas": 0}})
    stored = client.indices.get_settings(index=name)[name]["settings"]["index"]
    assert stored["gc_deletes"] == "30s" and stored["number_of_replicas"] == "0"
    # When the same setting is updated in nested form
    assert client.indices.put_settings(index=name, body={"index": {"gc_deletes": "2m"}}) == {"acknowledged": True}
    # Then it replaced the flat one
    assert client.indices.get_settings(index=name)[name]["settings"]["index"]["gc_deletes"] == "2m"


def test_creating_an_existing_index_and_bad_names_are_rejected(
    client: OpenSearch, new_index: Callable[[], str]
) -> None:
    name = new_index()
    client.indices.create(index=name)
    # When the index is created again
    with pytest.raises(RequestError) as again:
        client.indices.create(index=name)
    # Then
    assert again.value.status_code == 400
    assert again.value.error == "resource_already_exists_exception"
    # When a name has uppercase letters
    with pytest.raises(RequestError) as upper:
        client.indices.create(index=name.upper())
    # Then
    assert upper.value.error == "invalid_index_name_exception"
    assert upper.value.info["error"]["index"] == name.upper()


def test_deleted_or_missing_index_is_a_404_with_the_error_envelope(
    client: OpenSearch, endpoint: str, new_index: Callable[[], str]
) -> None:
    name = new_index()
    client.indices.create(index=name)
    # When the index is deleted
    assert client.indices.delete(index=name) == {"acknowledged": True}
    # Then it no longer exists, and reading, searching or deleting it again is a 404
    assert client.indices.exists(index=name) is False
    for method, path in (("GET", f"/{name}/_doc/1"), ("POST", f"/{name}/_search"), ("DELETE", f"/{name}")):
        status, body = raw(endpoint, method, path)
        assert status == 404, path
        assert body["status"] == 404
        assert body["error"]["type"] == "index_not_found_exception"
        assert body["error"]["root_cause"][0]["type"] == "index_not_found_exception"
        assert body["error"]["index"] == name
        assert body["error"]["reason"] == f"no such index [{name}]"


def test_first_write_creates_the_index_with_dynamic_mappings(client: OpenSearch, new_index: Callable[[], str]) -> None:
    name = new_index()
    # When a document is written to an index that does not exist
    result = client.index(
        index=name, id="1", body={"title": "Hello", "count": 3, "ok": True, "at": "2024-05-01T10:00:00Z"}
    )
    # Then the index was created and its fields mapped dynamically
    assert result["result"] == "created" and result["_version"] == 1
    properties = client.indices.get_mapping(index=name)[name]["mappings"]["properties"]
    assert properties["title"] == {"type": "text", "fields": {"keyword": {"type": "keyword", "ignore_above": 256}}}
    assert properties["count"] == {"type": "long"}
    assert properties["ok"] == {"type": "boolean"}
    assert properties["at"]["type"] == "date"


def test_dynamic_false_and_strict_mappings(client: OpenSearch, new_index: Callable[[], str]) -> None:
    loose, strict = new_index(), new_index()
    client.indices.create(index=loose, body={"mappings": {"dynamic": False, "properties": {"a": {"type": "keyword"}}}})
    client.indices.create(
        index=strict, body={"mappings": {"dynamic": "strict", "properties": {"a": {"type": "keyword"}}}}
    )
    # When a document brings an unmapped field into a "dynamic": false index
    client.index(index=loose, id="1", body={"a": "x", "extra": "y"}, refresh=True)
    # Then it is kept in _source but neither mapped nor searchable
    assert client.get(index=loose, id="1")["_source"] == {"a": "x", "extra": "y"}
    assert "extra" not in client.indices.get_mapping(index=loose)[loose]["mappings"]["properties"]
    assert client.count(index=loose, body={"query": {"term": {"extra": "y"}}})["count"] == 0
    # When it goes to a "dynamic": "strict" index, Then the document is rejected
    with pytest.raises(RequestError) as rejected:
        client.index(index=strict, id="1", body={"a": "x", "extra": "y"})
    assert rejected.value.error == "strict_dynamic_mapping_exception"
    assert client.index(index=strict, id="2", body={"a": "x"})["result"] == "created"


# ------------------------------------------------------------------------------------ documents


def test_index_get_and_delete_with_internal_versions(
    client: OpenSearch, endpoint: str, new_index: Callable[[], str]
) -> None:
    name = new_index()
    # When a document is created, then replaced
    status, first = raw(endpoint, "PUT", f"/{name}/_doc/d1", {"n": 1})
    second = client.index(index=name, id="d1", body={"n": 2})
    # Then the versions and sequence numbers move on and the shards header is reported
    assert status == 201 and first["result"] == "created" and first["_version"] == 1
    assert first["_primary_term"] == 1 and first["_shards"]["failed"] == 0
    assert second["result"] == "updated" and second["_version"] == 2
    assert second["_seq_no"] > first["_seq_no"]
    got = client.get(index=name, id="d1")
    assert got["found"] is True and got["_source"] == {"n": 2}
    assert (got["_version"], got["_seq_no"], got["_primary_term"]) == (2, second["_seq_no"], 1)
    assert client.get_source(index=name, id="d1") == {"n": 2}
    assert client.exists(index=name, id="d1") is True
    # When it is deleted
    deleted = client.delete(index=name, id="d1")
    # Then the delete is a new version and the document is gone
    assert deleted["result"] == "deleted" and deleted["_version"] == 3
    with pytest.raises(NotFoundError) as missing:
        client.get(index=name, id="d1")
    assert missing.value.info == {"_index": name, "_id": "d1", "found": False}
    assert client.exists(index=name, id="d1") is False


def test_auto_generated_ids(client: OpenSearch, new_index: Callable[[], str]) -> None:
    name = new_index()
    # When documents are POSTed without an id
    first = client.index(index=name, body={"n": 1})
    second = client.index(index=name, body={"n": 2})
    # Then each gets its own generated id
    assert first["result"] == "created" and first["_id"] and first["_id"] != second["_id"]
    assert client.get(index=name, id=first["_id"])["_source"] == {"n": 1}


def test_seq_no_and_primary_term_guard_writes(client: OpenSearch, new_index: Callable[[], str]) -> None:
    name = new_index()
    first = client.index(index=name, id="cas", body={"n": 1})
    # Given a writer that read the document at its first sequence number
    seen = {"if_seq_no": first["_seq_no"], "if_primary_term": first["_primary_term"]}
    # When it writes with that precondition, Then the write succeeds
    client.index(index=name, id="cas", body={"n": 2}, **seen)
    # When it writes again with the now stale precondition, Then index, update and delete conflict
    with pytest.raises(ConflictError) as stale:
        client.index(index=name, id="cas", body={"n": 3}, **seen)
    assert stale.value.error == "version_conflict_engine_exception"
    assert f"required seqNo [{first['_seq_no']}], primary term [1]" in stale.value.info["error"]["reason"]
    with pytest.raises(ConflictError):
        client.update(index=name, id="cas", body={"doc": {"n": 4}}, **seen)
    with pytest.raises(ConflictError):
        client.delete(index=name, id="cas", **seen)
    # And a precondition on a document that does not exist conflicts too
    with pytest.raises(ConflictError):
        client.index(index=name, id="absent", body={"n": 1}, **seen)
    assert client.get(index=name, id="cas")["_source"] == {"n": 2}


def test_version_without_external_type_is_rejected(client: OpenSearch, new_index: Callable[[], str]) -> None:
    name = new_index()
    client.index(index=name, id="v", body={"n": 1})
    # When internal versioning is asked to compare versions, Then OpenSearch refuses (use if_seq_no)
    with pytest.raises(RequestError) as internal:
        client.index(index=name, id="v", body={"n": 2}, version=1)
    assert internal.value.error == "action_request_validation_exception"
    assert "internal versioning can not be used for optimistic concurrency control" in str(internal.value.info)
    # When external versioning gets no version, Then it is a validation error too
    with pytest.raises(RequestError) as no_version:
        client.index(index=name, id="v", body={"n": 2}, version_type="external")
    assert no_version.value.error == "action_request_validation_exception"


def test_external_version_must_be_strictly_higher(client: OpenSearch, new_index: Callable[[], str]) -> None:
    name = new_index()
    # Given a document written at external version 5
    created = client.index(index=name, id="row-1", body={"v": 5}, version=5, version_type="external")
    assert created["result"] == "created" and created["_version"] == 5
    # When older or equal versions arrive, Then they conflict and change nothing
    for stale in (3, 5):
        with pytest.raises(ConflictError) as conflict:
            client.index(index=name, id="row-1", body={"v": stale}, version=stale, version_type="external")
        body = conflict.value.info
        assert body["status"] == 409
        assert body["error"]["type"] == "version_conflict_engine_exception"
        assert body["error"]["root_cause"][0]["type"] == "version_conflict_engine_exception"
        assert body["error"]["index"] == name
        assert body["error"]["reason"] == (
            f"[row-1]: version conflict, current version [5] is higher or equal to the one provided [{stale}]"
        )
    # When a higher version arrives, Then it wins and becomes the document's version
    newer = client.index(index=name, id="row-1", body={"v": 9}, version=9, version_type="external")
    assert newer["result"] == "updated" and newer["_version"] == 9
    assert client.get(index=name, id="row-1")["_source"] == {"v": 9}


def test_external_gte_accepts_an_equal_version(client: OpenSearch, new_index: Callable[[], str]) -> None:
    name = new_index()
    client.index(index=name, id="row-2", body={"v": "a"}, version=5, version_type="external_gte")
    # When the same version is written again with external_gte, Then it is accepted
    same = client.index(index=name, id="row-2", body={"v": "b"}, version=5, version_type="external_gte")
    assert same["result"] == "updated" and same["_version"] == 5
    # When a lower version arrives, Then it conflicts with the external_gte wording
    with pytest.raises(ConflictError) as conflict:
        client.index(index=name, id="row-2", body={"v": "c"}, version=4, version_type="external_gte")
    assert conflict.value.info["error"]["reason"] == (
        "[row-2]: version conflict, current version [5] is higher than the one provided [4]"
    )
    assert client.get(index=name, id="row-2")["_source"] == {"v": "b"}


def test_delete_tombstone_blocks_a_stale_reindex_then_expires(client: OpenSearch, new_index: Callable[[], str]) -> None:
    name = new_index()
    client.indices.create(index=name, body={"settings": {"index": {"gc_deletes": "1s"}}})
    client.index(index=name, id="row", body={"v": 5}, version=5, version_type="external")
    # Given the row was deleted at external version 6
    deleted = client.delete(index=name, id="row", version=6, version_type="external")
    assert deleted["result"] == "deleted" and deleted["_version"] == 6
    # When an older change arrives late, Then the tombstone rejects it (for versions up to 6)
    for stale in (5, 6):
        with pytest.raises(ConflictError) as conflict:
            client.index(index=name, id="row", body={"v": stale}, version=stale, version_type="external")
        assert "current version [6] is higher or equal to the one provided" in conflict.value.info["error"]["reason"]
    assert client.exists(index=name, id="row") is False
    if LOCAL:
        # When index.gc_deletes has passed, Then the tombstone is forgotten and version 5 is accepted
        time.sleep(1.2)
        late = client.index(index=name, id="row", body={"v": 5}, version=5, version_type="external")
        assert late["result"] == "created" and late["_version"] == 5


def test_delete_of_a_missing_document_with_external_version_leaves_a_tombstone(
    client: OpenSearch, new_index: Callable[[], str]
) -> None:
    name = new_index()
    client.indices.create(index=name)
    # When a document that never existed is deleted at external version 10
    with pytest.raises(NotFoundError) as not_found:
        client.delete(index=name, id="ghost", version=10, version_type="external")
    # Then the answer is 404 not_found, at that version
    assert not_found.value.info["result"] == "not_found" and not_found.value.info["_version"] == 10
    # And older writes and deletes now conflict with the tombstone
    with pytest.raises(ConflictError):
        client.index(index=name, id="ghost", body={"v": 9}, version=9, version_type="external")
    with pytest.raises(ConflictError) as older_delete:
        client.delete(index=name, id="ghost", version=8, version_type="external")
    assert "current version [10] is higher or equal to the one provided [8]" in str(older_delete.value.info)
    # While a newer write goes through
    newer = client.index(index=name, id="ghost", body={"v": 11}, version=11, version_type="external")
    assert newer["result"] == "created" and newer["_version"] == 11


def test_internal_delete_of_a_missing_document_is_a_404(client: OpenSearch, new_index: Callable[[], str]) -> None:
    name = new_index()
    client.indices.create(index=name)
    with pytest.raises(NotFoundError) as not_found:
        client.delete(index=name, id="nothing")
    assert not_found.value.info["result"] == "not_found"


def test_create_conflicts_when_the_document_exists(client: OpenSearch, new_index: Callable[[], str]) -> None:
    name = new_index()
    assert client.create(index=name, id="c1", body={"a": 1})["_version"] == 1
    # When the same id is created again, through _create or op_type=create
    with pytest.raises(ConflictError) as again:
        client.create(index=name, id="c1", body={"a": 2})
    with pytest.raises(ConflictError):
        client.index(index=name, id="c1", body={"a": 3}, op_type="create")
    # Then both conflict and the document is untouched
    assert again.value.info["error"]["reason"] == (
        "[c1]: version conflict, document already exists (current version [1])"
    )
    assert client.get(index=name, id="c1")["_source"] == {"a": 1}
    # When it is deleted, Then it can be created again, its version continuing past the delete
    assert client.delete(index=name, id="c1")["_version"] == 2
    recreated = client.create(index=name, id="c1", body={"a": 4})
    assert recreated["result"] == "created" and recreated["_version"] == 3


def test_create_with_external_versioning_is_rejected(client: OpenSearch, new_index: Callable[[], str]) -> None:
    name = new_index()
    # When op_type=create is combined with an external version, Then validation rejects it
    with pytest.raises(RequestError) as rejected:
        client.index(index=name, id="x", body={"a": 1}, op_type="create", version=3, version_type="external")
    assert rejected.value.error == "action_request_validation_exception"
    assert "create operations only support internal versioning" in str(rejected.value.info)


def test_update_merges_a_partial_document_and_detects_noops(client: OpenSearch, new_index: Callable[[], str]) -> None:
    name = new_index()
    client.index(index=name, id="u1", body={"name": "a", "address": {"city": "Paris", "zip": "75001"}, "tags": ["x"]})
    # When a partial document is applied
    updated = client.update(index=name, id="u1", body={"doc": {"address": {"city": "Lyon"}, "tags": ["y", "z"]}})
    # Then objects merge, arrays are replaced, and the version moves on
    assert updated["result"] == "updated" and updated["_version"] == 2
    assert client.get(index=name, id="u1")["_source"] == {
        "name": "a",
        "address": {"city": "Lyon", "zip": "75001"},
        "tags": ["y", "z"],
    }
    # When the same partial document is applied again, Then nothing changes: a noop
    noop = client.update(index=name, id="u1", body={"doc": {"address": {"city": "Lyon"}}})
    assert noop["result"] == "noop" and noop["_version"] == 2


def test_update_of_a_missing_document(client: OpenSearch, new_index: Callable[[], str]) -> None:
    name = new_index()
    # When a missing document is updated without an upsert, Then it is document_missing_exception
    with pytest.raises(NotFoundError) as missing:
        client.update(index=name, id="m1", body={"doc": {"a": 1}})
    assert missing.value.error == "document_missing_exception"
    # When doc_as_upsert is set, Then the doc is created
    upserted = client.update(index=name, id="m1", body={"doc": {"a": 1}, "doc_as_upsert": True})
    assert upserted["result"] == "created" and upserted["_version"] == 1
    assert client.get(index=name, id="m1")["_source"] == {"a": 1}
    # When an upsert body is given, Then it is used for a missing document, and doc for an existing one
    body = {"doc": {"a": 2}, "upsert": {"a": 1, "first": True}}
    assert client.update(index=name, id="m2", body=body)["result"] == "created"
    assert client.get(index=name, id="m2")["_source"] == {"a": 1, "first": True}
    assert client.update(index=name, id="m2", body=body)["result"] == "updated"
    assert client.get(index=name, id="m2")["_source"] == {"a": 2, "first": True}


# ----------------------------------------------------------------------------------------- bulk


def test_bulk_reports_every_item_and_continues_past_failures(client: OpenSearch, new_index: Callable[[], str]) -> None:
    name = new_index()
    client.index(index=name, id="exists", body={"v": 1})
    client.index(index=name, id="ext", body={"v": 5}, version=5, version_type="external")
    # When a bulk request mixes good and failing operations
    actions = [
        {"index": {"_index": name, "_id": "new"}},
        {"v": 1},
        {"create": {"_index": name, "_id": "exists"}},
        {"v": 2},
        {"update": {"_index": name, "_id": "missing"}},
        {"doc": {"v": 3}},
        {"delete": {"_index": name, "_id": "exists"}},
        {"index": {"_index": name, "_id": "ext", "version": 4, "version_type": "external"}},
        {"v": 4},
        {"delete": {"_index": name, "_id": "never-existed"}},
        {"index": {"_id": "default-index"}},
        {"v": 6},
    ]
    result = client.bulk(body=actions, index=name)
    # Then each item has its own outcome, failures carry an error, and errors is true
    items = result["items"]
    assert result["errors"] is True
    assert [next(iter(item)) for item in items] == ["index", "create", "update", "delete", "index", "delete", "index"]
    assert [item_status(item) for item in items] == [201, 409, 404, 200, 409, 404, 201]
    assert items[0]["index"]["result"] == "created" and items[0]["index"]["_version"] == 1
    assert items[1]["create"]["error"]["type"] == "version_conflict_engine_exception"
    assert items[2]["update"]["error"]["type"] == "document_missing_exception"
    assert items[3]["delete"]["result"] == "deleted"
    assert items[4]["index"]["error"]["reason"] == (
        "[ext]: version conflict, current version [5] is higher or equal to the one provided [4]"
    )
    assert items[5]["delete"]["result"] == "not_found" and "error" not in items[5]["delete"]
    assert items[6]["index"]["_index"] == name
    # And the failed items changed nothing
    assert client.get(index=name, id="ext")["_source"] == {"v": 5}


def test_bulk_without_failures_reports_no_errors(client: OpenSearch, new_index: Callable[[], str]) -> None:
    name = new_index()
    actions = [{"index": {"_index": name, "_id": "1"}}, {"v": 1}, {"delete": {"_index": name, "_id": "1"}}]
    result = client.bulk(body=actions, refresh=True)
    assert result["errors"] is False
    assert [item_status(item) for item in result["items"]] == [201, 200]


def test_bulk_body_must_end_with_a_newline(endpoint: str, new_index: Callable[[], str]) -> None:
    name = new_index()
    body = f'{{"index":{{"_index":"{name}","_id":"1"}}}}\n{{"v":1}}'.encode()
    # When the last line is not terminated
    status, error = raw(endpoint, "POST", "/_bulk", body, content_type="application/x-ndjson")
    # Then the whole request is refused
    assert status == 400
    assert error["error"]["type"] == "illegal_argument_exception"
    assert "must be terminated by a newline" in error["error"]["reason"]
    assert raw(endpoint, "HEAD", f"/{name}")[0] == 404


def test_malformed_bulk_is_refused_as_a_whole(endpoint: str, new_index: Callable[[], str]) -> None:
    name = new_index()
    body = f'{{"index":{{"_index":"{name}","_id":"1"}}}}\n{{"v":1}}\n{{"upsert":{{"_id":"2"}}}}\n{{"v":2}}\n'
    # When one action line is not index/create/update/delete
    status, error = raw(endpoint, "POST", "/_bulk", body.encode(), content_type="application/x-ndjson")
    # Then the request is a 400 and nothing was written
    assert status == 400 and error["error"]["type"] == "illegal_argument_exception"
    assert raw(endpoint, "HEAD", f"/{name}")[0] == 404


# --------------------------------------------------------------------------------------- search

CATALOG = {
    "1": {
        "sku": "A-1",
        "title": "Café Crème au lait",
        "price": 3.5,
        "stock": 10,
        "published": "2024-01-15",
        "active": True,
        "tags": ["drink", "hot"],
        "maker": {"country": "FR"},
    },
    "2": {
        "sku": "A-2",
        "title": "東京タワー Tokyo tower",
        "price": 12.0,
        "stock": 0,
        "published": "2024-02-01T08:00:00Z",
        "active": True,
        "tags": ["souvenir"],
        "maker": {"country": "JP"},
    },
    "3": {
        "sku": "B-1",
        "title": "京都の寺 Kyoto temple",
        "price": 20.0,
        "stock": 5,
        "published": "2023-12-31",
        "active": False,
        "tags": ["souvenir", "culture"],
        "maker": {"country": "JP"},
    },
    "4": {
        "sku": "B-2",
        "title": "Cafe latte",
        "price": 4.0,
        "stock": 7,
        "published": "2024-03-10",
        "active": True,
        "tags": ["drink"],
        "maker": {"country": "IT"},
    },
    "5": {
        "sku": "C-1",
        "title": "Plain notebook",
        "price": 2.0,
        "published": "2024-01-31T23:59:59Z",
        "active": False,
        "tags": [],
        "maker": {"country": "FR"},
    },
}
CATALOG_MAPPINGS = {
    "properties": {
        "sku": {"type": "keyword"},
        "title": {"type": "text", "fields": {"keyword": {"type": "keyword", "ignore_above": 256}}},
        "price": {"type": "double"},
        "stock": {"type": "integer"},
        "published": {"type": "date"},
        "active": {"type": "boolean"},
        "tags": {"type": "keyword"},
        "maker": {"properties": {"country": {"type": "keyword"}}},
    }
}


@pytest.fixture(scope="module")
def catalog(client: OpenSearch) -> Iterator[str]:
    """An index of five products, loaded with one bulk request and refreshed."""
    name = f"fanout-test-catalog-{uuid.uuid4().hex[:12]}"
    client.indices.create(index=name, body={"mappings": CATALOG_MAPPINGS})
    actions: list[dict] = []
    for doc_id, source in CATALOG.items():
        actions += [{"index": {"_index": name, "_id": doc_id}}, source]
    assert client.bulk(body=actions, refresh=True)["errors"] is False
    yield name
    client.indices.delete(index=name)


def search(client: OpenSearch, index: str, query: dict, **body: Any) -> dict:
    return client.search(index=index, body={"query": query, **body})


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        # match: analyzed, case-insensitive, accents kept (the standard analyzer does not fold them)
        ({"match": {"title": "CAFÉ"}}, {"1"}),
        ({"match": {"title": "cafe"}}, {"4"}),
        ({"match": {"title": "tokyo TEMPLE"}}, {"2", "3"}),
        ({"match": {"title": {"query": "kyoto temple", "operator": "and"}}}, {"3"}),
        # CJK text is split into one token per ideograph: 東京 is 東 or 京
        ({"match": {"title": "東京"}}, {"2", "3"}),
        ({"match": {"title": {"query": "東京", "operator": "and"}}}, {"2"}),
        # term: exact on keyword, numbers and booleans; on text it meets the lowercased tokens
        ({"term": {"sku": "A-1"}}, {"1"}),
        ({"term": {"sku": "a-1"}}, set()),
        ({"term": {"title": "Café"}}, set()),
        ({"term": {"title": "café"}}, {"1"}),
        ({"term": {"title.keyword": "Cafe latte"}}, {"4"}),
        ({"term": {"stock": 0}}, {"2"}),
        ({"term": {"active": False}}, {"3", "5"}),
        ({"term": {"maker.country": {"value": "JP"}}}, {"2", "3"}),
        ({"terms": {"tags": ["hot", "culture"]}}, {"1", "3"}),
        ({"ids": {"values": ["1", "3", "nope"]}}, {"1", "3"}),
        ({"exists": {"field": "stock"}}, {"1", "2", "3", "4"}),
        # range on numbers and on dates; lte on a bare date includes that whole day
        ({"range": {"price": {"gt": 3.5, "lte": 12}}}, {"2", "4"}),
        ({"range": {"published": {"gte": "2024-01-01", "lt": "2024-02-01"}}}, {"1", "5"}),
        ({"range": {"published": {"gte": "2024-01-01", "lte": "2024-01-31"}}}, {"1", "5"}),
        ({"range": {"published": {"gt": "2024-01-31"}}}, {"2", "4"}),
        # bool
        ({"bool": {"must": [{"term": {"maker.country": "JP"}}], "must_not": [{"term": {"active": False}}]}}, {"2"}),
        ({"bool": {"filter": [{"range": {"price": {"gte": 10}}}, {"term": {"maker.country": "JP"}}]}}, {"2", "3"}),
        ({"bool": {"should": [{"term": {"tags": "hot"}}, {"term": {"tags": "culture"}}]}}, {"1", "3"}),
        # with a filter, should clauses are optional
        ({"bool": {"filter": {"term": {"active": True}}, "should": {"term": {"tags": "hot"}}}}, {"1", "2", "4"}),
        ({"match_all": {}}, {"1", "2", "3", "4", "5"}),
    ],
)
def test_search_queries(client: OpenSearch, catalog: str, query: dict, expected: set[str]) -> None:
    # When the catalog is searched, Then exactly the expected products are hits
    result = search(client, catalog, query)
    assert ids(result) == expected
    assert result["hits"]["total"] == {"value": len(expected), "relation": "eq"}
    assert result["timed_out"] is False and result["_shards"]["failed"] == 0


def test_search_scores_filters_as_zero_and_matches_as_positive(client: OpenSearch, catalog: str) -> None:
    filtered = search(client, catalog, {"bool": {"filter": {"term": {"active": True}}}})
    assert {hit["_score"] for hit in filtered["hits"]["hits"]} == {0.0}
    matched = search(client, catalog, {"match": {"title": "tower"}})
    assert matched["hits"]["max_score"] > 0 and matched["hits"]["hits"][0]["_score"] > 0
    assert search(client, catalog, {"term": {"sku": "nope"}})["hits"]["max_score"] is None


def test_search_sorts_and_pages(client: OpenSearch, catalog: str) -> None:
    # When sorted by price descending, Then the most expensive come first with their sort values
    by_price = search(client, catalog, {"match_all": {}}, sort=[{"price": {"order": "desc"}}], size=2)
    assert [hit["_id"] for hit in by_price["hits"]["hits"]] == ["3", "2"]
    assert [hit["sort"] for hit in by_price["hits"]["hits"]] == [[20.0], [12.0]]
    assert by_price["hits"]["total"]["value"] == 5
    # When sorted ascending on a field one product lacks, Then that product comes last
    by_stock = search(client, catalog, {"match_all": {}}, sort=["stock"])
    assert [hit["_id"] for hit in by_stock["hits"]["hits"]] == ["2", "3", "4", "1", "5"]
    # When paging a keyword sort, Then from/size cut the sorted list
    page = search(client, catalog, {"match_all": {}}, sort=[{"sku": "asc"}], **{"from": 1, "size": 2})
    assert [hit["_source"]["sku"] for hit in page["hits"]["hits"]] == ["A-2", "B-1"]
    # When no size is given, Then at most 10 hits come back
    assert len(search(client, catalog, {"match_all": {}})["hits"]["hits"]) == 5


def test_search_after_pages_through_the_sorted_hits(client: OpenSearch, catalog: str) -> None:
    # Given the catalog sorted by _id, When paging two at a time with the last hit's sort values
    seen: list[str] = []
    after: list[Any] | None = None
    while True:
        extra: dict[str, Any] = {"search_after": after} if after is not None else {}
        page = search(client, catalog, {"match_all": {}}, sort=[{"_id": "asc"}], size=2, _source=False, **extra)
        hits = page["hits"]["hits"]
        if not hits:
            break
        seen += [hit["_id"] for hit in hits]
        assert len(seen) <= len(CATALOG), f"paging does not end: {seen}"
        after = hits[-1]["sort"]
    # Then every document comes exactly once, in _id order
    assert seen == ["1", "2", "3", "4", "5"]
    # And a descending numeric sort continues strictly after the given value
    cheaper = search(client, catalog, {"match_all": {}}, sort=[{"price": "desc"}], search_after=[12.0])
    assert [hit["sort"][0] for hit in cheaper["hits"]["hits"]] == sorted(
        (hit["sort"][0] for hit in cheaper["hits"]["hits"]), reverse=True
    )
    assert cheaper["hits"]["hits"] and all(hit["sort"][0] < 12.0 for hit in cheaper["hits"]["hits"])


def page_by_id(
    client: OpenSearch, index: str, query: dict, order: str, size: int, between_pages: Callable[[int], None]
) -> list[str]:
    """Every hit's _id, paging ``size`` at a time by ``_id`` with ``search_after``; ``between_pages(n)``
    runs after page n (writes there are seen by the later pages, as without a point in time)."""
    seen: list[str] = []
    after: list[Any] | None = None
    while True:
        body: dict[str, Any] = {"query": query, "sort": [{"_id": order}], "size": size, "_source": False}
        if after is not None:
            body["search_after"] = after
        hits = client.search(index=index, body={**body, "track_total_hits": False})["hits"]["hits"]
        if not hits:
            return seen
        page = [hit["_id"] for hit in hits]
        assert not set(page) & set(seen), f"page {page} repeats hits already seen"
        assert [hit["sort"] for hit in hits] == [[doc_id] for doc_id in page]
        seen += page
        after = hits[-1]["sort"]
        between_pages(len(seen) // size)


@pytest.mark.parametrize("order", ["asc", "desc"])
def test_paging_by_id_sees_the_writes_made_between_pages(
    client: OpenSearch, new_index: Callable[[], str], order: str
) -> None:
    # Given 30 documents (ids 00..58, even) with a number n
    name = new_index()
    docs = {f"{i:02d}": i for i in range(0, 60, 2)}
    bulk = [line for doc_id, n in docs.items() for line in ({"index": {"_index": name, "_id": doc_id}}, {"n": n})]
    assert client.bulk(body=bulk, refresh=True)["errors"] is False

    def write(page: int) -> None:
        # after page 1: one id appears on each side of the cursor, one ahead is deleted, one behind too
        if page == 1:
            for doc_id in ("01", "57"):
                client.index(index=name, id=doc_id, body={"n": int(doc_id)}, refresh=True)
            for doc_id in ("02", "56"):
                client.delete(index=name, id=doc_id, refresh=True)

    # When paging by _id, 7 at a time, with writes after the first page
    seen = page_by_id(client, name, {"match_all": {}}, order, 7, write)
    # Then each page continued strictly after the cursor in the index as it then was
    first = sorted(docs, reverse=order == "desc")[:7]
    rest = sorted((set(docs) | {"01", "57"}) - {"02", "56"}, reverse=order == "desc")
    cursor = first[-1]
    assert seen == first + [d for d in rest if (d > cursor if order == "asc" else d < cursor)]
    # And a filtered query pages through exactly its matches
    filtered = page_by_id(client, name, {"range": {"n": {"gte": 10, "lt": 40}}}, order, 4, lambda page: None)
    assert filtered == sorted((d for d in rest if 10 <= int(d) < 40), reverse=order == "desc")


def test_total_hits_of_an_id_sorted_search_count_every_match_up_to_the_limit(
    client: OpenSearch, new_index: Callable[[], str]
) -> None:
    name = new_index()
    bulk = [line for i in range(25) for line in ({"index": {"_index": name, "_id": str(i)}}, {"n": i})]
    assert client.bulk(body=bulk, refresh=True)["errors"] is False
    body: dict[str, Any] = {"query": {"range": {"n": {"gte": 5}}}, "sort": [{"_id": "asc"}], "size": 3}
    # The total counts all 20 matches, not the page, and not only those after the cursor
    assert client.search(index=name, body=body)["hits"]["total"] == {"value": 20, "relation": "eq"}
    after = client.search(index=name, body={**body, "search_after": ["5"]})["hits"]
    assert after["total"] == {"value": 20, "relation": "eq"} and [h["_id"] for h in after["hits"]] == ["6", "7", "8"]
    # With a lower tracking limit the total stops there and says so
    capped = client.search(index=name, body={**body, "track_total_hits": 12})["hits"]["total"]
    assert capped == {"value": 12, "relation": "gte"}
    everything = client.search(index=name, body={**body, "query": {"match_all": {}}, "track_total_hits": True})
    assert everything["hits"]["total"] == {"value": 25, "relation": "eq"}


def test_random_score_draws_a_reproducible_uniform_sample(client: OpenSearch, new_index: Callable[[], str]) -> None:
    # Given 200 documents, half of them "even"
    name = new_index()
    bulk = [
        line for i in range(200) for line in ({"index": {"_index": name, "_id": str(i)}}, {"n": i, "even": i % 2 == 0})
    ]
    assert client.bulk(body=bulk, refresh=True)["errors"] is False

    def draw(seed: int | None, query: dict | None = None, size: int = 40) -> list[dict]:
        random_score: dict[str, Any] = {} if seed is None else {"seed": seed, "field": "_seq_no"}
        function_score = {"query": query or {"match_all": {}}, "random_score": random_score, "boost_mode": "replace"}
        body = {"query": {"function_score": function_score}, "size": size, "_source": ["n"]}
        return list(client.search(index=name, body=body)["hits"]["hits"])

    # When the 40 top hits by a seeded random score are taken
    first = draw(7)
    # Then they come in score order, scores in [0, 1), spread over the whole index
    scores = [hit["_score"] for hit in first]
    assert scores == sorted(scores, reverse=True) and all(0 <= score < 1 for score in scores)
    assert {hit["_source"]["n"] // 50 for hit in first} == {0, 1, 2, 3}
    # And the same seed draws the same sample; another seed another one
    assert [hit["_id"] for hit in draw(7)] == [hit["_id"] for hit in first]
    assert [hit["_id"] for hit in draw(8)] != [hit["_id"] for hit in first]
    # And the wrapped query still decides which documents match
    evens = draw(None, {"term": {"even": True}}, size=200)
    assert len(evens) == 100 and all(hit["_source"]["n"] % 2 == 0 for hit in evens)


def test_an_ids_query_inside_bool_finds_only_its_documents(client: OpenSearch, catalog: str) -> None:
    # Given an ids clause in a bool filter beside another condition
    query = {"bool": {"filter": [{"ids": {"values": ["1", "2", "3", "nope"]}}, {"term": {"maker.country": "JP"}}]}}
    # Then both must hold: JP products among the listed ids
    assert ids(search(client, catalog, query)) == {"2", "3"}
    # And must_not ids excludes them from everything else
    assert ids(search(client, catalog, {"bool": {"must_not": {"ids": {"values": ["1", "2"]}}}})) == {"3", "4", "5"}
    # And two ids clauses intersect
    both = {"bool": {"must": [{"ids": {"values": ["1", "2"]}}, {"ids": {"values": ["2", "3"]}}]}}
    assert ids(search(client, catalog, both)) == {"2"}


@pytest.mark.parametrize(
    "body",
    [
        {"search_after": ["1"]},  # no sort
        {"search_after": ["1", 2], "sort": [{"_id": "asc"}]},  # a value per sort key
        {"search_after": ["1"], "sort": [{"_id": "asc"}], "from": 1},  # from must be 0
    ],
)
def test_search_after_is_refused_where_opensearch_refuses_it(client: OpenSearch, catalog: str, body: dict) -> None:
    with pytest.raises(TransportError) as refused:
        client.search(index=catalog, body={"query": {"match_all": {}}, **body})
    assert refused.value.status_code == 400


def test_search_source_filtering_and_total_tracking(client: OpenSearch, catalog: str) -> None:
    query = {"ids": {"values": ["1"]}}
    picked = search(client, catalog, query, _source=["sku", "maker.country"])["hits"]["hits"][0]
    assert picked["_source"] == {"sku": "A-1", "maker": {"country": "FR"}}
    excluded = search(client, catalog, query, _source={"excludes": ["title", "tags", "maker"]})["hits"]["hits"][0]
    assert set(excluded["_source"]) == {"sku", "price", "stock", "published", "active"}
    assert "_source" not in search(client, catalog, query, _source=False)["hits"]["hits"][0]
    assert "total" not in search(client, catalog, query, track_total_hits=False)["hits"]


def test_count_with_and_without_a_query(client: OpenSearch, catalog: str) -> None:
    assert client.count(index=catalog)["count"] == 5
    assert client.count(index=catalog, body={"query": {"term": {"active": True}}})["count"] == 3
    assert client.indices.refresh(index=catalog)["_shards"]["failed"] == 0


def test_sorting_on_a_text_field_is_refused(client: OpenSearch, catalog: str) -> None:
    with pytest.raises(TransportError) as refused:
        search(client, catalog, {"match_all": {}}, sort=["title"])
    assert refused.value.status_code == 400


# ----------------------------------------------------------------------------------------- HTTP


def test_keep_alive_connection_is_reused_across_many_requests(endpoint: str, new_index: Callable[[], str]) -> None:
    name = new_index()
    conn = connect(endpoint)
    headers = {"Content-Type": JSON, **auth_headers(endpoint)}

    def call(method: str, path: str, body: Any = None, **extra: Any) -> tuple[int, bytes]:
        conn.request(method, path, body=body, headers={**headers, **extra.pop("headers", {})}, **extra)
        response = conn.getresponse()
        return response.status, response.read()

    try:
        conn.connect()
        sock = conn.sock
        assert sock is not None
        assert call("PUT", f"/{name}", b"{}")[0] == 200
        # When many requests, HEAD ones included, go over the same connection
        for i in range(25):
            assert call("PUT", f"/{name}/_doc/{i}", json.dumps({"i": i}))[0] == 201
            assert call("HEAD", f"/{name}/_doc/{i}") == (200, b"")
            assert call("GET", f"/{name}/_doc/{i}")[0] == 200
            assert conn.sock is sock, "the server closed the connection"
        # And a chunked request body
        chunks = iter([b'{"chunked":', b" true}"])
        status, _ = call("PUT", f"/{name}/_doc/chunked", chunks, encode_chunked=True)
        assert status == 201
        call("POST", f"/{name}/_refresh")
        _, body = call("POST", f"/{name}/_count", b"{}")
        # Then every one was answered on the one socket
        assert json.loads(body)["count"] == 26
        assert conn.sock is sock
    finally:
        conn.close()


def test_one_client_serves_many_requests(client: OpenSearch, new_index: Callable[[], str]) -> None:
    name = new_index()
    for i in range(60):
        client.index(index=name, id=str(i), body={"i": i})
    client.indices.refresh(index=name)
    assert client.count(index=name)["count"] == 60


def test_runs_as_a_process_and_stops_on_sigterm() -> None:
    # Given the server started as a process on a free port
    proc = subprocess.Popen(
        [sys.executable, str(SERVER_PATH), "--host", "127.0.0.1", "--port", "0"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        match = re.fullmatch(r"listening on (http://127\.0\.0\.1:\d+)\n", line)
        assert match, line
        # When it is asked for the cluster info, Then it answers
        status, info = raw(match.group(1), "GET", "/")
        assert status == 200 and info["version"]["distribution"] == "opensearch"
        # When it gets SIGTERM, Then it exits cleanly
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
