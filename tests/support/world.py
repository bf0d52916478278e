"""The fetcher's world in memory: a source database, OpenSearch and DynamoDB (fakes) with the real sinks over
them, sample rows and changes, and the fetcher handler (fetcher_fn/app.py) wired to that world."""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import Any

from fanout.model.change import Change
from fanout.model.mapping import Mappings, default_mappings
from fanout.pipeline.fetch_queue import ChangeQueue
from fanout.pipeline.fetcher import Fetcher
from fanout.pipeline.rejects import Reject
from fanout.sinks.dynamodb import DynamoDBSink
from fanout.sinks.opensearch import OpenSearchSink
from tests.support.fakes import FakeDynamoDBTable, FakeOpenSearch, FakeSource, load_app
from tests.support.files import template_resource

POSTS = default_mappings()
NOW = 1764240000.0
TOMBSTONE_TTL = 3600


def row(post_id: int, title: str) -> dict[str, Any]:
    return {"id": post_id, "title": title, "body": "text", "author": None, "status": "draft", "updated_at": None}


def change(post_id: int = 1, table: str = "posts", action: str = "update") -> Change:
    return Change(table, (("id", post_id),), action, 1764240000000000, "req-fetch")


class World:
    """A source database, OpenSearch and DynamoDB, all in memory, and the real sinks over them."""

    def __init__(self, mappings: Mappings = POSTS) -> None:
        self.mappings = mappings
        self.source = FakeSource()
        self.opensearch = FakeOpenSearch()
        self.table = FakeDynamoDBTable.from_template(template_resource("ReplicaTable"))
        self.opensearch_sink = OpenSearchSink(self.opensearch)
        self.dynamodb_sink = DynamoDBSink(
            self.table.meta.client, self.table.name, tombstone_ttl_seconds=TOMBSTONE_TTL, clock=lambda: NOW
        )
        self.sinks = [self.opensearch_sink, self.dynamodb_sink]

    def fetcher(self, reject: Reject | None = None, continuations: ChangeQueue | None = None) -> Fetcher:
        """The fetch path over this world, as fanout.pipeline.wiring builds it over the real clients."""
        return Fetcher(self.mappings, self.source, self.sinks, reject=reject, continuations=continuations)

    def apply(self, *changes: Change) -> dict[str, str]:
        report = self.fetcher().apply(changes)
        return {entry["sink"]: entry["outcome"] for entry in report.outcomes}

    def document(self, post_id: int) -> dict[str, Any] | None:
        return self.opensearch.document("posts", str(post_id))

    def item(self, post_id: int) -> dict[str, Any] | None:
        return self.table.items.get(f"posts#{post_id}")

    def titles(self, post_id: int) -> tuple[str | None, str | None]:
        """The title each sink holds for a post (None: no live row there)."""
        document = self.document(post_id) or {}
        item = self.item(post_id) or {}
        return document.get("title"), None if item.get("_deleted") else item.get("title")


def load_fetcher_app() -> ModuleType:
    return load_app("fetcher_fn/app.py", "fetcher_app")


def fetcher_handler(fetcher: Fetcher) -> Callable[[Any, Any], dict[str, Any]]:
    """The fetcher's handler (fetcher_fn/app.py, its observability wrapper included) over ``fetcher``, as if its
    first invocation had built that fetch path."""
    app = load_fetcher_app()
    app._fetcher = lambda: fetcher
    handler: Callable[[Any, Any], dict[str, Any]] = app.handler
    return handler
