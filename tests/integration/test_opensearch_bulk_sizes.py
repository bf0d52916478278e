"""OpenSearch _bulk requests cut by bytes and by operations, against the real OpenSearch node.

The sink's limits are the named constants in fanout.sinks.opensearch (BULK_TARGET_BYTES,
BULK_MAX_OPERATIONS) capped by the domain's request limit (OPENSEARCH_MAX_REQUEST_BYTES); here they are
set small so the boundaries are cheap to reach, and the requests that reach the node are measured.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from fanout.config import DEFAULT_OPENSEARCH_MAX_REQUEST_BYTES
from fanout.model.change import Change
from fanout.model.mapping import default_mappings
from fanout.sinks import Outcome, RowRejected
from fanout.sinks.opensearch import (
    BULK_MAX_OPERATIONS,
    BULK_TARGET_BYTES,
    OpenSearchSink,
    make_client,
)
from fanout.source.rows import RowState
from tests.support.indices import delete_index
from tests.support.mappings import in_index

POSTS = default_mappings().get("posts")


@pytest.fixture
def world(opensearch_endpoint: str) -> Any:
    """A client whose _bulk request bodies are recorded (bytes as sent), and a fresh index."""
    client = make_client(opensearch_endpoint)
    sent: list[bytes] = []
    transport = client.transport
    original = transport.perform_request

    def perform_request(method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        if url.endswith("/_bulk"):
            body = kwargs.get("body")
            sent.append(body if isinstance(body, bytes) else str(body).encode("utf-8"))
        return original(method, url, *args, **kwargs)

    transport.perform_request = perform_request
    mapping = in_index(POSTS, f"posts-bulk-{uuid.uuid4().hex[:8]}")
    yield client, sent, mapping
    delete_index(client, mapping.opensearch.index)


def batch(n: int, first: int = 1) -> list[tuple[Change, RowState]]:
    return [
        (Change("posts", (("id", k),), "update", 1), RowState({"id": k, "title": f"t{k:05d}", "body": "x" * 100}, 10))
        for k in range(first, first + n)
    ]


def operation_bytes(client: Any, mapping: Any, items: list[tuple[Change, RowState]]) -> list[int]:
    """Each operation's bytes in a _bulk body, as the sink would send it (nothing is sent)."""
    probe = OpenSearchSink(client)
    recorded: list[tuple[int, bytes, bool, str]] = []
    probe._send_bulk = lambda _m, _i, request, _r: recorded.extend(request)  # type: ignore[method-assign]
    probe.apply_batch(mapping, items)
    return [len(lines) for _, lines, _, _ in recorded]


def test_the_limits_are_the_recommended_ones() -> None:
    assert 5 * 2**20 <= BULK_TARGET_BYTES <= 15 * 2**20 and 1000 <= BULK_MAX_OPERATIONS <= 5000
    assert BULK_TARGET_BYTES <= DEFAULT_OPENSEARCH_MAX_REQUEST_BYTES


def test_a_request_holds_exactly_as_many_operations_as_fit_the_byte_limit(world: Any) -> None:
    client, sent, mapping = world
    items = batch(30, 10)  # two-digit ids: every operation has the same size
    sizes = operation_bytes(client, mapping, items)
    assert len(set(sizes)) == 1
    # Given a limit that exactly ten operations fill
    limit = sum(sizes[:10])
    sink = OpenSearchSink(client, max_request_bytes=limit)
    # When thirty are written
    outcomes = sink.apply_batch(mapping, items)
    # Then the node got three requests of ten, none above the limit, and every row has its outcome
    assert outcomes == [Outcome.WRITTEN] * 30
    assert [body.count(b"\n") // 2 for body in sent] == [10, 10, 10]
    assert max(len(body) for body in sent) == limit
    # And one byte less makes each request hold one operation fewer
    sent.clear()
    assert (
        OpenSearchSink(client, max_request_bytes=limit - 1).apply_batch(mapping, batch(30, 40))
        == [Outcome.WRITTEN] * 30
    )
    assert [body.count(b"\n") // 2 for body in sent] == [9, 9, 9, 3]
    client.indices.refresh(index=mapping.opensearch.index)
    assert client.count(index=mapping.opensearch.index)["count"] == 60


def test_a_request_holds_at_most_the_operation_limit(world: Any) -> None:
    client, sent, mapping = world
    sink = OpenSearchSink(client, bulk_operations=10)
    items = batch(24) + [(Change("posts", (("id", 99),), "delete", 1), RowState(None, 10))]
    outcomes = sink.apply_batch(mapping, items)
    assert outcomes == [Outcome.WRITTEN] * 24 + [Outcome.DELETED]
    assert [body.count(b'{"index"') + body.count(b'{"delete"') for body in sent] == [10, 10, 5]


def test_the_domain_limit_caps_the_target_and_refuses_only_the_row_above_it(world: Any) -> None:
    client, sent, mapping = world
    items = batch(6)
    sizes = operation_bytes(client, mapping, items)
    # Given a target far above the domain's limit, which two operations fill
    domain = sizes[0] + sizes[1]
    sink = OpenSearchSink(client, max_request_bytes=domain, bulk_bytes=100 * domain)
    big = (Change("posts", (("id", 7),), "update", 1), RowState({"id": 7, "title": "big", "body": "y" * domain}, 10))
    # When six rows and one larger than the domain takes are written
    outcomes = sink.apply_batch(mapping, items[:3] + [big] + items[3:])
    # Then the requests follow the domain's limit, and only the large row is refused
    assert all(len(body) <= domain for body in sent) and len(sent) == 3
    assert outcomes[:3] + outcomes[4:] == [Outcome.WRITTEN] * 6 and isinstance(outcomes[3], RowRejected)
