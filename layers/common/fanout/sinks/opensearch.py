"""OpenSearch sink: one document per row, version-gated (docs/architecture.md, "Versions and sinks").

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

The document (:func:`opensearch_document`): the row's columns renamed, without excluded ones, each value
in its JSON form (:func:`to_json_value`, the table in :mod:`fanout.sinks`); with the full id in
``_fanout_key`` when the document id is a bounded one (:mod:`fanout.model.sink_keys`).

Batches go in ``_bulk`` requests of at most BULK_MAX_OPERATIONS operations and
BULK_TARGET_BYTES bytes, capped by the domain's request limit: the sizes AWS and
OpenSearch recommend (5-15 MiB, 1,000-5,000 operations). The bytes are the
request's own (the NDJSON the sink sends), so the cap is exact.

Numbers: a JSON column's numbers reach the sink as Decimal; the client
:func:`make_client` builds writes them with all their digits and reads them back
exactly (:class:`ExactJSONSerializer`). A plain opensearch-py client would turn
them into floats: give the sink (and reconcile) a client from :func:`make_client`.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import time
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from typing import Any

import simplejson
from opensearchpy.serializer import JSONSerializer

from fanout import aws
from fanout.config import DEFAULT_OPENSEARCH_MAX_REQUEST_BYTES
from fanout.model.change import Change
from fanout.model.mapping import FULL_KEY_FIELD, OPENSEARCH_METADATA_FIELDS, TableMapping
from fanout.model.sink_keys import (
    MAX_DOCUMENT_ID_BYTES,
    UnrepresentableRow,
    bounded_sink_id,
    opensearch_full_id,
)
from fanout.redaction import describe_item_error
from fanout.sinks import Outcome, Relation, RowRejected, SinkError, parsed_json, relation_value, temporal_text
from fanout.sinks.generations import TARGETS_TTL_SECONDS, WriteTargets
from fanout.source.rows import JsonText, RowState

DEFAULT_GC_DELETES = "1h"
# One _bulk request's size: AWS and OpenSearch recommend 5-15 MiB and 1,000-5,000 operations a request.
BULK_TARGET_BYTES = 10 * 1024 * 1024
BULK_MAX_OPERATIONS = 5000
PERMANENT_STATUSES = (400, 413)
MAX_EXTERNAL_VERSION = 2**63 - 1  # external versions are Java longs: the engine refuses a whole _bulk beyond it


# --------------------------------------------------------------------------- the document


def to_json_value(value: Any) -> Any:
    """A MySQL value as a JSON value for OpenSearch."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (dt.date, dt.timedelta)):
        return temporal_text(value)
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    if isinstance(value, JsonText):
        return parsed_json(value)  # numbers as Decimal: the sink's serializer writes them with all their digits
    if isinstance(value, Relation):
        return relation_value(value, to_json_value)
    raise TypeError(f"no JSON form for a value of type {type(value).__name__}")


def _same(read: Any, changed: Any) -> bool:
    return type(read) is type(changed) and read == changed


def _row_change(mapping: TableMapping, row: dict[str, Any]) -> Change:
    return Change(mapping.table, tuple((c, row[c]) for c in mapping.key_columns), "update", 1)


def opensearch_document(mapping: TableMapping, row: dict[str, Any], full_id: str | None = None) -> dict[str, Any]:
    """The document indexed in OpenSearch for a row: renamed, without excluded columns; with the full id
    in ``_fanout_key`` when the document id is a bounded one. ``full_id``: the row's full id if the caller
    has it (:func:`fanout.model.sink_keys.opensearch_full_id`), else rendered from the row's key."""
    document: dict[str, Any] = {}
    for column, value in row.items():
        if column in mapping.opensearch.exclude:
            continue
        if isinstance(value, (bytes, bytearray)) and mapping.opensearch.binary == "exclude":
            continue
        name = mapping.opensearch.field(column)
        if name in document or name in OPENSEARCH_METADATA_FIELDS or name == FULL_KEY_FIELD:
            raise UnrepresentableRow(
                f"column {column!r} of {mapping.table} would be the OpenSearch field {name!r}, which is "
                "taken or reserved; rename or exclude it in the mapping"
            )
        document[name] = to_json_value(value)
    if full_id is None:
        full_id = opensearch_full_id(mapping, _row_change(mapping, row))
    if bounded_sink_id(full_id, MAX_DOCUMENT_ID_BYTES) != full_id:
        document[FULL_KEY_FIELD] = full_id
    return document


def opensearch_refusal(mapping: TableMapping, row: dict[str, Any]) -> str:
    """Why no OpenSearch document can be built for this row ("" if one can; the index may still refuse it)."""
    try:
        opensearch_document(mapping, row)
    except (UnrepresentableRow, TypeError) as exc:
        return str(exc)
    return ""


# --------------------------------------------------------------------------- the client


class ExactJSONSerializer(JSONSerializer):
    """opensearch-py's JSON serializer, but a Decimal is written as a JSON number with all its digits and
    a JSON number with a fraction or exponent is read back as a Decimal.

    opensearch-py turns a Decimal into a float (and reads numbers as floats), so a JSON column's
    3.141592653589793238462643383279 would reach the index as 3.141592653589793. OpenSearch keeps the
    ``_source`` text as sent; the indexed value is what the field's mapping makes of it (a ``double``
    rounds to 17 digits for search and sorting, the document still returns every digit).
    """

    def dumps(self, data: Any) -> Any:
        if isinstance(data, (str, bytes)):  # already serialised (the sink sends _bulk bodies as bytes)
            return data
        try:
            return simplejson.dumps(
                data, default=self.default, use_decimal=True, ensure_ascii=False, separators=(",", ":")
            )
        except (ValueError, TypeError) as exc:
            from opensearchpy.exceptions import SerializationError

            raise SerializationError(data, exc) from exc

    def loads(self, s: str) -> Any:
        try:
            return json.loads(s, parse_float=Decimal)
        except (ValueError, TypeError) as exc:
            from opensearchpy.exceptions import SerializationError

            raise SerializationError(s, exc) from exc


def _encoded(value: dict[str, Any]) -> bytes:
    """A JSON object as the sink's client sends it, numbers exact."""
    return str(ExactJSONSerializer().dumps(value)).encode("utf-8")


def _ndjson(line: dict[str, Any]) -> bytes:
    """One _bulk action line as sent (opensearch-py sends a bytes body as it is). Its values are names and
    integers, which the standard library's encoder writes as :func:`_encoded` does, at less cost a line."""
    return json.dumps(line, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n"


def make_client(endpoint: str, auth: str = "none") -> Any:
    """An opensearch-py client for the endpoint (SigV4-signed for Amazon OpenSearch Service), with exact
    JSON numbers both ways (:class:`ExactJSONSerializer`): the sink and reconcile need that."""
    from opensearchpy import OpenSearch

    options: dict[str, Any] = {
        "serializer": ExactJSONSerializer(),
        "hosts": [endpoint],
        "timeout": 10,
        "max_retries": 2,
        "retry_on_timeout": True,
    }
    if auth == "sigv4":
        from opensearchpy import Urllib3AWSV4SignerAuth

        # Signed on the client's own urllib3 connection, the one it uses unsigned too: one HTTP stack in every
        # environment (the requests-based connection was a second one, traced twice by X-Ray). The credentials
        # are the AWS clients' own session's (fanout.aws).
        options.update(
            http_auth=Urllib3AWSV4SignerAuth(aws.credentials(), aws.region(), "es"),
            verify_certs=True,
        )
    return OpenSearch(**options)


class OpenSearchSink:
    """Writes each row to every index of its table's write set (:mod:`fanout.sinks.generations`), version-gated
    in each, so a reindex's two generations both stay current whatever order the writes arrive in.

    ``pinned`` (alias -> index) writes that table to that one existing index only: the reindex's copy into a
    new generation. ``targets_ttl``: how long the write set read from OpenSearch is trusted (the reindex
    waits for it; keep the default outside tests)."""

    name = "opensearch"

    def __init__(
        self,
        client: Any,
        gc_deletes: str = DEFAULT_GC_DELETES,
        max_request_bytes: int = DEFAULT_OPENSEARCH_MAX_REQUEST_BYTES,
        bulk_bytes: int = BULK_TARGET_BYTES,
        bulk_operations: int = BULK_MAX_OPERATIONS,
        *,
        targets_ttl: float = TARGETS_TTL_SECONDS,
        pinned: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._gc_deletes = gc_deletes
        self._max_request_bytes = max_request_bytes
        self._bulk_bytes = min(bulk_bytes, max_request_bytes)  # never above what the domain takes
        self._bulk_operations = bulk_operations
        self.targets = WriteTargets(client, gc_deletes, targets_ttl, clock)
        self._pinned = dict(pinned or {})

    def enabled_for(self, mapping: TableMapping) -> bool:
        return mapping.opensearch.enabled

    def target_indices(self, mapping: TableMapping) -> tuple[str, ...]:
        """The indices this table's rows are written to now."""
        pinned = self._pinned.get(mapping.opensearch.index)
        return (pinned,) if pinned is not None else self.targets.get(mapping)

    def _document(
        self, mapping: TableMapping, change: Change, state: RowState
    ) -> tuple[str, dict[str, Any] | None, bytes]:
        """The document id, the body (None: a delete) and the body as sent (b"" for a delete); RowRejected
        if it can never fit."""
        where = f"{mapping.opensearch.index}/{change.document_id}"
        if not 0 <= state.version <= MAX_EXTERNAL_VERSION:  # a database clock gone wrong: refuse this row alone
            raise RowRejected(
                f"OpenSearch cannot hold {where}: version {state.version} is outside the engine's external "
                "version range (0 to 2^63-1)"
            )
        try:
            full_id = opensearch_full_id(mapping, change)
            doc_id = bounded_sink_id(full_id, MAX_DOCUMENT_ID_BYTES)
            body = None
            if state.row is not None:
                # the id rendered once, when the row read holds the change's key exactly (a case-insensitive
                # collation could have matched another spelling: then the row's own key is rendered)
                same_key = all(_same(state.row.get(column), value) for column, value in change.key)
                body = opensearch_document(mapping, state.row, full_id if same_key else None)
        except (UnrepresentableRow, TypeError) as exc:  # TypeError: a value with no JSON form
            raise RowRejected(f"OpenSearch cannot hold {where}: {exc}") from exc
        encoded = b""
        if body is not None:
            encoded = _encoded(body)
            size = len(encoded)
            if size > self._max_request_bytes:
                raise RowRejected(
                    f"OpenSearch cannot hold {where}: the document is {size} bytes, above the "
                    f"{self._max_request_bytes}-byte request limit; exclude large columns (opensearch.exclude)"
                )
        return doc_id, body, encoded

    def apply_batch(self, mapping: TableMapping, items: Sequence[tuple[Change, RowState]]) -> list[Outcome | Exception]:
        """All rows in ``_bulk`` requests, each item with its own external_gte version, once per index of the
        write set; per row its Outcome or its exception. Per item: 409 is STALE, 400/413 RowRejected (that row
        only), others SinkError; a whole request failing is a SinkError for each of its rows (retried). A row
        written to several indices takes the worst of its answers (:func:`_combined`)."""
        from opensearchpy.exceptions import TransportError

        results: list[list[Outcome | Exception]] = [[] for _ in items]
        documents: list[tuple[int, dict[str, Any], bytes, bool]] = []  # (position, meta, body as sent, delete)
        for position, (change, state) in enumerate(items):
            try:
                doc_id, body, encoded = self._document(mapping, change, state)
            except RowRejected as exc:
                results[position].append(exc)
                continue
            meta = {"_id": doc_id, "version": state.version, "version_type": "external_gte"}
            documents.append((position, meta, encoded, body is None))
        targets: tuple[str, ...] = ()
        if documents:
            try:
                targets = self.target_indices(mapping)
            except TransportError as exc:
                error = SinkError(f"OpenSearch index {mapping.opensearch.index} is not available: {exc}")
                for position, _, _, _ in documents:
                    results[position].append(error)
        pending: list[tuple[int, bytes, bool, str]] = []  # (position, its bulk lines as sent, is a delete, index)
        for index in targets:
            for position, meta, encoded, is_delete in documents:
                head = {"delete" if is_delete else "index": {"_index": index, **meta}}
                lines = _ndjson(head) if is_delete else _ndjson(head) + encoded + b"\n"
                if len(lines) > self._max_request_bytes:
                    results[position].append(
                        RowRejected(
                            f"OpenSearch cannot hold {index}/{items[position][0].document_id}: its _bulk lines are "
                            f"{len(lines)} bytes, above the {self._max_request_bytes}-byte request limit; exclude "
                            "large columns (opensearch.exclude)"
                        )
                    )
                    continue
                pending.append((position, lines, is_delete, index))
        for request in self.bulk_requests(pending):
            self._send_bulk(mapping, items, request, results)
        if any(isinstance(r, SinkError) for answers in results for r in answers):
            self.targets.forget(mapping.opensearch.index)  # an index may have gone: read the write set again
        return [_combined(answers) for answers in results]

    def bulk_requests(self, pending: list[_Operation]) -> list[list[_Operation]]:
        """The operations cut into _bulk requests: each at most ``bulk_operations`` operations and
        ``min(bulk_bytes, max_request_bytes)`` bytes, in order."""
        requests: list[list[_Operation]] = []
        request: list[_Operation] = []
        size = 0
        for entry in pending:
            if request and (len(request) >= self._bulk_operations or size + len(entry[1]) > self._bulk_bytes):
                requests.append(request)
                request, size = [], 0
            request.append(entry)
            size += len(entry[1])
        if request:
            requests.append(request)
        return requests

    def _send_bulk(
        self,
        mapping: TableMapping,
        items: Sequence[tuple[Change, RowState]],
        request: list[_Operation],
        results: list[list[Outcome | Exception]],
    ) -> None:
        from opensearchpy.exceptions import TransportError

        body = b"".join(lines for _, lines, _, _ in request)
        try:
            response = self._client.bulk(body=body)
        except TransportError as exc:
            if exc.status_code == 413 and len(request) > 1:  # too big together: each alone decides
                for position, _, _, index in request:
                    change, state = items[position]
                    try:
                        results[position].append(self._apply_one(mapping, change, state, index))
                    except Exception as error:  # noqa: BLE001 - reported per row
                        results[position].append(error)
                return
            for position, _, _, index in request:
                if exc.status_code == 413:  # this one row is more than the domain takes in a request
                    where = f"{index}/{items[position][0].document_id}"
                    results[position].append(RowRejected(f"OpenSearch refused {where} (HTTP 413): {exc}"))
                else:
                    results[position].append(SinkError(f"OpenSearch _bulk failed for {index}: {exc}"))
            return
        answers = response.get("items", [])
        for number, (position, _, is_delete, index) in enumerate(request):
            action = "delete" if is_delete else "index"
            item = answers[number].get(action, {}) if number < len(answers) else {}
            status = int(item.get("status", 500))
            where = f"{index}/{items[position][0].document_id}"
            if status == 409:
                results[position].append(Outcome.STALE)
            elif action == "delete" and (status < 300 or status == 404):  # 404: nothing to delete, tombstone kept
                results[position].append(Outcome.DELETED)
            elif status < 300:
                results[position].append(Outcome.WRITTEN)
            elif status in PERMANENT_STATUSES:
                results[position].append(
                    RowRejected(f"OpenSearch refused {where} (HTTP {status}): {describe_item_error(item.get('error'))}")
                )
            else:
                results[position].append(
                    SinkError(
                        f"OpenSearch failed for {where} (HTTP {status}): {describe_item_error(item.get('error'))}"
                    )
                )

    def apply(self, mapping: TableMapping, change: Change, state: RowState) -> Outcome:
        """One row, to every index of the write set (the worst answer wins, as in :meth:`apply_batch`)."""
        from opensearchpy.exceptions import TransportError

        try:
            targets = self.target_indices(mapping)
        except TransportError as exc:
            raise SinkError(f"OpenSearch index {mapping.opensearch.index} is not available: {exc}") from exc
        answers: list[Outcome | Exception] = []
        for index in targets:
            try:
                answers.append(self._apply_one(mapping, change, state, index))
            except (RowRejected, SinkError) as exc:
                answers.append(exc)
        outcome = _combined(answers)
        if isinstance(outcome, Exception):
            if isinstance(outcome, SinkError):
                self.targets.forget(mapping.opensearch.index)
            raise outcome
        return outcome

    def _apply_one(self, mapping: TableMapping, change: Change, state: RowState, index: str) -> Outcome:
        from opensearchpy.exceptions import ConflictError, NotFoundError, TransportError

        where = f"{index}/{change.document_id}"
        doc_id, body, _ = self._document(mapping, change, state)
        versioning = {"version": state.version, "version_type": "external_gte"}
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


_Operation = tuple[int, bytes, bool, str]  # (row position, its _bulk lines as sent, is a delete, the index)


def _combined(answers: Sequence[Outcome | Exception]) -> Outcome | Exception:
    """One row's outcome from its answers, one per index written: a failure to retry first, then a refusal
    (recorded), then a write over a stale answer (the row is current wherever it was not already newer)."""
    for kind in (SinkError, Exception):
        for answer in answers:
            if isinstance(answer, kind):
                return answer
    for outcome in (Outcome.WRITTEN, Outcome.DELETED, Outcome.STALE):
        if outcome in answers:
            return outcome
    return SinkError("no bulk answer")
