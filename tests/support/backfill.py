"""The backfill and reconcile tests' harness on real parts: MySQL 8.0, a real OpenSearch node, DynamoDB on ministack
(the ``harness`` fixture that builds one is in tests/integration/conftest.py)."""

from __future__ import annotations

import json
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from opensearchpy import OpenSearch

from fanout.config import DatabaseSettings
from fanout.model.change import Change
from fanout.model.mapping import Mappings, TableMapping
from fanout.operations.reconcile import SinkReaders, reconcile
from fanout.pipeline.fetcher import Fetcher
from fanout.pipeline.rejects import Reject
from fanout.source.composition_read import root_page
from fanout.source.connection import connect
from fanout.source.reader import read_rows
from fanout.source.rows import RowState
from tests.support.files import ROOT
from tests.support.sequences import numbers


def apply_checkpoint_migration(settings: DatabaseSettings) -> None:
    conn = connect(settings)
    try:
        with conn.cursor() as cur:
            cur.execute((ROOT / "db" / "migrations" / "V005__backfill_checkpoint.sql").read_text(encoding="utf-8"))
    finally:
        conn.close()


@dataclass
class Harness:
    settings: DatabaseSettings
    conn: Any  # autocommit: key pages, checkpoints, plain reads, test setup
    reader: Any  # the fetch path's connection
    mappings: Mappings
    opensearch: OpenSearch
    table: Any
    sinks: list[Any]
    readers: SinkReaders
    fetches: int = 0
    fail_after: int | None = None
    lock: threading.Lock = threading.Lock()

    def read_rows(self, mapping: TableMapping, changes: Any, *, deadline: Any = None) -> list[RowState | Exception]:
        """The fetch path's batched read (one locking query per page), counted per key."""
        with self.lock:
            self.fetches += len(changes)
            if self.fail_after is not None and self.fetches > self.fail_after:
                raise RuntimeError("simulated crash of the backfill")
            return read_rows(self.reader, mapping, changes)

    def root_page(self, mapping: TableMapping, change: Change, page_size: int) -> list[Change]:
        with self.lock:
            return root_page(self.reader, mapping, change, page_size)

    def fetcher(self, reject: Reject | None = None) -> Fetcher:
        """The fetch path over this harness: its counted reads as the source, its sinks."""
        return Fetcher(self.mappings, self, self.sinks, reject=reject)

    def mapping(self, table: str) -> TableMapping:
        mapping = self.mappings.get(table)
        assert mapping is not None
        return mapping

    def execute(self, sql: str, params: Any = None) -> None:
        with self.conn.cursor() as cur:
            cur.execute(sql, params)

    def reconcile(self, **options: Any) -> Any:
        return reconcile(self.conn, self.mappings, self.readers, page_size=200, **options)

    def repair(self) -> Any:
        return self.reconcile(repair=True, fetcher=self.fetcher())


def insert_posts(h: Harness, count: int, start: int = 1) -> None:
    h.execute(
        "INSERT INTO posts (id, title, body, author, status) "  # noqa: S608 - numbers() is integers only
        f"SELECT seq, CONCAT('title ', seq), CONCAT('body ', seq), 'ann', 'published' "
        f"FROM {numbers(start, start + count - 1)} s"
    )


def insert_settings(h: Harness, tenants: list[str], keys: int) -> None:
    for tenant in tenants:
        for k in range(keys):
            h.execute(
                "INSERT INTO tenant_settings (tenant, setting_key, value, description, secret_hash) "
                "VALUES (%s, %s, %s, %s, %s)",
                (tenant, f"key {k}/x", '{"on": true}', f"setting {k}", b"\x00\x01"),
            )


def cli_environment(h: Harness, local_aws: dict[str, str], opensearch_endpoint: str, tmp_path: Path) -> dict[str, str]:
    """What `fanout` needs to work on the harness's schema, sinks and (suffixed) index names."""
    from tests.support.aws import aws_client

    mapping_file = tmp_path / "tables.json"
    document = json.loads((ROOT / "layers" / "common" / "fanout" / "tables.json").read_text(encoding="utf-8"))
    for name, table in document["tables"].items():
        table["opensearch"]["index"] = h.mapping(name).opensearch.index
    mapping_file.write_text(json.dumps(document), encoding="utf-8")
    queue = aws_client(local_aws, "sqs").create_queue(QueueName=f"fanout-cli-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    return {
        **local_aws,
        "DB_HOST": h.settings.host,
        "DB_PORT": str(h.settings.port),
        "DB_NAME": h.settings.name,
        "DB_USER": h.settings.user,
        "DB_PASSWORD": h.settings.password,
        "OPENSEARCH_ENDPOINT": opensearch_endpoint,
        "DYNAMODB_TABLE": h.table.name,
        "DEAD_LETTER_QUEUE_URL": queue,
        "FANOUT_MAPPING_FILE": str(mapping_file),
        "LOG_LEVEL": "WARNING",
    }
