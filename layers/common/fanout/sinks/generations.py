"""An OpenSearch index behind an alias: the generations fanout writes, and the set of them live changes go to.

The index name in tables.json is an **alias**: searches use it, and it points at one **generation**, the
physical index ``<alias>.g<n>`` created with the mapping's ``index_mappings`` and ``index_settings``. Live
changes go to the **write set**, the alias ``<alias>.write``: one generation normally, two while a reindex
builds the next one and until ``fanout reindex TABLE --drop-old`` (so the old one stays current for
``--rollback``). A deployment whose index is still a concrete index named like the alias is written there
until ``fanout reindex`` moves it behind an alias (docs/runbook.md, "Changing a mapping").

:class:`WriteTargets` tells the sink which indices to write, asking OpenSearch at most once every
``ttl`` seconds per alias (one ``GET _alias`` per table and fetcher a period, not per batch). Because of
that cache a reindex adds the new generation to the write set and then waits ``settle_seconds(ttl)``
before its copy reads the first row: docs/architecture.md ("Reindex") gives the argument, and
tests/unit/test_reindex_ordering.py fails without the wait.

Tombstones (``index.gc_deletes``) are what refuse a late write of an older version after a delete; with
OpenSearch's default, 60 s, a write read before a delete and landing a minute after it (a retried or delayed
``_bulk`` under a burst) brings the deleted document back in OpenSearch only (DynamoDB keeps its tombstones for
days): the orphans of a burst. So every index a table is written to keeps them for the sink's lifetime, three
ways: an index template for the alias and its generations (OpenSearch creates a missing index on *any* write, a
delete too, with the templates' settings and not ours: after an operator or a reset dropped it under a warm
fetcher), the generation's own settings when it is created (:func:`index_body`), and raised on an index found
keeping them for less (a dynamic setting).
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable
from typing import Any

from fanout.model.mapping import TableMapping
from fanout.observability import log
from fanout.redaction import describe_error

WRITE_SET_SUFFIX = ".write"
# How long a fetcher trusts the write set it read. The reindex waits this long (and a margin) after changing
# the set before it relies on every fetcher writing the new one: a constant, so both sides agree.
TARGETS_TTL_SECONDS = 10.0
SETTLE_MARGIN_SECONDS = 2.0  # clock-rate differences between hosts, and the request that read the set
FIRST_GENERATION = 1
TEMPLATE_PREFIX = "fanout-tombstones-"  # the index template that gives an auto-created index our gc_deletes
TEMPLATE_PRIORITY = 500
_UNITS = {"nanos": 1e-9, "micros": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def duration_seconds(text: str) -> float:
    """An OpenSearch time value ("60s", "1h", "500ms") in seconds; ValueError if it is none."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(nanos|micros|ms|s|m|h|d)\s*", str(text))
    if match is None:
        raise ValueError(f"not an OpenSearch time value: {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def write_set(alias: str) -> str:
    """The alias naming every generation live changes go to."""
    return alias + WRITE_SET_SUFFIX


def generation_name(alias: str, number: int) -> str:
    return f"{alias}.g{number}"


def generation_number(alias: str, index: str) -> int | None:
    """``n`` for ``<alias>.g<n>``; None for any other index (a concrete index named like the alias)."""
    found = re.fullmatch(re.escape(alias) + r"\.g([0-9]+)", index)
    return int(found.group(1)) if found else None


def settle_seconds(ttl: float = TARGETS_TTL_SECONDS) -> float:
    """How long after a change of the write set every fetcher's cached copy has been read again."""
    return ttl + SETTLE_MARGIN_SECONDS


def index_body(mapping: TableMapping, gc_deletes: str, aliases: dict[str, Any] | None = None) -> dict[str, Any]:
    """The create-index body of a generation: the mapping's settings with fanout's tombstone lifetime, its
    ``index_mappings``, and ``aliases`` (created with the index, atomically)."""
    settings: dict[str, Any] = json.loads(mapping.opensearch.index_settings or "{}")
    own = settings.get("index")
    settings["index"] = {**(own if isinstance(own, dict) else {}), "gc_deletes": gc_deletes}
    body: dict[str, Any] = {"settings": settings}
    if mapping.opensearch.index_mappings:
        body["mappings"] = json.loads(mapping.opensearch.index_mappings)
    if aliases:
        body["aliases"] = aliases
    return body


def alias_indices(client: Any, alias: str) -> tuple[str, ...]:
    """The indices ``alias`` points at (none if it does not exist)."""
    from opensearchpy.exceptions import NotFoundError

    try:
        return tuple(sorted(client.indices.get_alias(name=alias)))
    except NotFoundError:
        return ()


class WriteTargets:
    """The indices each table's live changes are written to, read from OpenSearch at most once per ``ttl``.

    The write set's indices; without one, the concrete index named like the alias (a deployment from
    before aliases); without either, the first generation is created with the alias and the write set in
    the same request (so a search never sees the alias without an index). The time of a read is taken
    *before* its request, so a cached set is never younger than it looks.
    """

    def __init__(
        self,
        client: Any,
        gc_deletes: str,
        ttl: float = TARGETS_TTL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._gc_deletes = gc_deletes
        self._ttl = ttl
        self._clock = clock
        self._cache: dict[str, tuple[float, tuple[str, ...]]] = {}
        self._lock = threading.Lock()
        self._templated: set[str] = set()  # aliases whose tombstone template is in place
        self._kept: set[str] = set()  # indices checked for their tombstones' lifetime

    def get(self, mapping: TableMapping) -> tuple[str, ...]:
        alias = mapping.opensearch.index
        now = self._clock()
        with self._lock:
            cached = self._cache.get(alias)
        if cached is not None and now - cached[0] < self._ttl:
            return cached[1]
        targets = self._resolve(mapping)
        self._keep_tombstones(alias, targets)
        with self._lock:
            self._cache[alias] = (now, targets)
        return targets

    def _keep_tombstones(self, alias: str, targets: tuple[str, ...]) -> None:
        """The template for ``alias`` and its generations, once per alias; each of ``targets`` raised to the
        sink's tombstone lifetime if it keeps them for less, once per index (see the module). Best effort: a
        failure here (a domain that refuses templates to this role, say) is logged and tried again at the next
        read of the write set, and never stops the writes themselves."""
        try:
            if alias not in self._templated:
                self._client.indices.put_index_template(
                    name=f"{TEMPLATE_PREFIX}{alias}",
                    body={
                        "index_patterns": [alias, f"{alias}.g*"],
                        "priority": TEMPLATE_PRIORITY,
                        "template": {"settings": {"index": {"gc_deletes": self._gc_deletes}}},
                    },
                )
                self._templated.add(alias)
            for index in targets:
                if index not in self._kept:
                    self._raise_tombstones(index)
                    self._kept.add(index)
        except Exception as exc:  # noqa: BLE001 - housekeeping: the next read of the write set tries again
            log(logging.WARNING, "index tombstone lifetime not checked", index=alias, error=describe_error(exc))

    def _raise_tombstones(self, index: str) -> None:
        answer = self._client.indices.get_settings(index=index, name="index.gc_deletes", include_defaults=True)
        entry: dict[str, Any] = next(iter(answer.values()), {})
        kept = ((entry.get("settings") or {}).get("index") or {}).get("gc_deletes") or (
            (entry.get("defaults") or {}).get("index") or {}
        ).get("gc_deletes", "60s")
        if duration_seconds(kept) < duration_seconds(self._gc_deletes):
            self._client.indices.put_settings(index=index, body={"index": {"gc_deletes": self._gc_deletes}})
            log(logging.WARNING, "index kept deletes' tombstones too briefly; raised", index=index, was=kept,
                now=self._gc_deletes)  # fmt: skip

    def forget(self, alias: str) -> None:
        """Read the set again next time (a write to one of its indices failed: it may have gone)."""
        with self._lock:
            cached = self._cache.pop(alias, None)
            self._kept.difference_update(cached[1] if cached else ())  # and their tombstones checked again

    def _resolve(self, mapping: TableMapping) -> tuple[str, ...]:
        from opensearchpy.exceptions import RequestError

        alias = mapping.opensearch.index
        targets = alias_indices(self._client, write_set(alias))
        if targets:
            return targets
        if self._client.indices.exists(index=alias):
            return (alias,)  # a concrete index from before aliases (or an alias someone else made): written as is
        first = generation_name(alias, FIRST_GENERATION)
        body = index_body(mapping, self._gc_deletes, {alias: {}, write_set(alias): {}})
        try:
            self._client.indices.create(index=first, body=body)
        except RequestError as exc:  # created concurrently by another fetcher: read what it made
            if getattr(exc, "error", "") != "resource_already_exists_exception":
                raise
            return alias_indices(self._client, write_set(alias)) or (first,)
        return (first,)
