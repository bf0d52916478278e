"""OpenSearch sink: one document per row, version-gated (DESIGN.md §2.3).

Writes use external versioning with ``version_type=external_gte``: a document
is replaced only by a state read at the same or a later database instant, so a
delayed or duplicated change can never overwrite a newer one, and retrying the
same write is idempotent. Deletes are versioned too; OpenSearch keeps a delete
tombstone for ``index.gc_deletes``, which this sink sets on the indices it
creates to outlast any retry of a fetch.

A document that can never be indexed is refused for that row (RowRejected):
one larger than the domain accepts (``http.max_content_length``: 10 MiB on
smaller Amazon OpenSearch Service instance types, 100 MiB on larger ones; the
sink checks ``max_request_bytes`` itself and maps an HTTP 413 the same way),
or one OpenSearch answers with 400 (a value its mapping cannot parse, an id
too long, ...). Everything else (connection errors, 429, 5xx) is retried.
"""

from __future__ import annotations

import json
from typing import Any

from ..change import Change
from ..documents import UnrepresentableRow, opensearch_document, opensearch_document_id
from ..mapping import TableMapping
from ..source_reader import RowState
from . import Outcome, RowRejected, SinkError

DEFAULT_GC_DELETES = "1h"
DEFAULT_MAX_REQUEST_BYTES = 10 * 1024 * 1024
PERMANENT_STATUSES = (400, 413)


def make_client(endpoint: str, auth: str = "none") -> Any:
    """An opensearch-py client for the endpoint (SigV4-signed for Amazon OpenSearch Service)."""
    from opensearchpy import OpenSearch, RequestsHttpConnection

    options: dict[str, Any] = {
        "hosts": [endpoint],
        "timeout": 10,
        "max_retries": 2,
        "retry_on_timeout": True,
    }
    if auth == "sigv4":
        import boto3
        from opensearchpy import AWSV4SignerAuth

        session = boto3.Session()
        options.update(
            http_auth=AWSV4SignerAuth(session.get_credentials(), session.region_name, "es"),
            connection_class=RequestsHttpConnection,
            verify_certs=True,
        )
    return OpenSearch(**options)


class OpenSearchSink:
    name = "opensearch"

    def __init__(
        self, client: Any, gc_deletes: str = DEFAULT_GC_DELETES, max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    ) -> None:
        self._client = client
        self._gc_deletes = gc_deletes
        self._max_request_bytes = max_request_bytes
        self._ready_indices: set[str] = set()

    def enabled_for(self, mapping: TableMapping) -> bool:
        return mapping.opensearch_enabled

    def ensure_index(self, index: str) -> None:
        """Create the index (with a long enough tombstone lifetime) unless it exists."""
        from opensearchpy.exceptions import RequestError

        if index in self._ready_indices:
            return
        if not self._client.indices.exists(index=index):
            try:
                self._client.indices.create(index=index, body={"settings": {"index": {"gc_deletes": self._gc_deletes}}})
            except RequestError as exc:  # created concurrently by another fetcher
                if getattr(exc, "error", "") != "resource_already_exists_exception":
                    raise
        self._ready_indices.add(index)

    def apply(self, mapping: TableMapping, change: Change, state: RowState) -> Outcome:
        from opensearchpy.exceptions import ConflictError, NotFoundError, TransportError

        index = mapping.opensearch_index
        where = f"{index}/{change.document_id}"
        try:
            doc_id = opensearch_document_id(mapping, change)
            body = None if state.row is None else opensearch_document(mapping, state.row)
        except (UnrepresentableRow, TypeError) as exc:  # TypeError: a value with no JSON form
            raise RowRejected(f"OpenSearch cannot hold {where}: {exc}") from exc
        if body is not None:
            size = len(json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))
            if size > self._max_request_bytes:
                raise RowRejected(
                    f"OpenSearch cannot hold {where}: the document is {size} bytes, above the "
                    f"{self._max_request_bytes}-byte request limit; exclude large columns (opensearch.exclude)"
                )
        versioning = {"version": state.version, "version_type": "external_gte"}
        try:
            self.ensure_index(index)
        except TransportError as exc:
            raise SinkError(f"OpenSearch index {index} is not available: {exc}") from exc
        try:
            if body is None:
                try:
                    self._client.delete(index=index, id=doc_id, params=versioning)
                except NotFoundError:
                    pass  # nothing to delete; the tombstone is recorded all the same
                return Outcome.DELETED
            self._client.index(index=index, id=doc_id, body=body, params=versioning)
            return Outcome.WRITTEN
        except ConflictError:
            return Outcome.STALE
        except TransportError as exc:  # includes connection errors and timeouts
            if exc.status_code in PERMANENT_STATUSES:
                raise RowRejected(f"OpenSearch refused {where} (HTTP {exc.status_code}): {exc}") from exc
            raise SinkError(f"OpenSearch failed for {where}: {exc}") from exc
