"""Does each live OpenSearch index still match tables.json? And can OpenSearch apply the difference in place?

``fanout check`` and the maintenance function's ``check`` compare the generation behind each alias with the
mapping's ``index_mappings`` and ``index_settings``. What OpenSearch cannot change on an existing index
(a field's type or analyzer, ``number_of_shards``, the analysis chain) says "run fanout reindex TABLE"; what it
can (a new field, ``number_of_replicas``, ``refresh_interval``, ...) says how to apply it in place, or reindex.
A table whose index is still a concrete index from before aliases is named too: the reindex moves it.
Only what tables.json declares is compared: fields and settings it leaves out are OpenSearch's to choose.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from fanout.model.mapping import Mappings, TableMapping
from fanout.operations.schema_check import Drift
from fanout.sinks.generations import alias_indices

# Field parameters OpenSearch updates on an existing field; any other difference needs a new index.
IN_PLACE_FIELD_PARAMETERS = frozenset({"ignore_above", "search_analyzer", "search_quote_analyzer", "fields", "meta"})
# Index settings OpenSearch can only take when an index is created (or closed, which stops searches).
STATIC_SETTINGS = ("number_of_shards", "number_of_routing_shards", "codec", "analysis.", "sort.", "store.", "knn")


def _reindex(table: str) -> str:
    return f"run fanout reindex {table}"


def _flat(settings: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for key, value in settings.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            yield from _flat(value, name + ".")
        else:
            yield name, value


def _same(declared: Any, live: Any) -> bool:
    """OpenSearch answers every setting as text (lists as lists of text)."""
    if isinstance(declared, list):
        return isinstance(live, list) and [str(v).lower() for v in declared] == [str(v).lower() for v in live]
    return str(declared).lower() == str(live).lower()


def _field_type(spec: dict[str, Any]) -> str | None:
    return spec.get("type", "object" if "properties" in spec else None)


def mapping_drifts(
    table: str, index: str, declared: dict[str, Any], live: dict[str, Any], path: str = ""
) -> list[Drift]:
    """The declared ``properties`` against the live ones, field by field (objects recursively)."""
    drifts: list[Drift] = []
    for name, spec in declared.items():
        where = f"{index} field {path}{name}"
        found = live.get(name)
        if found is None:
            fix = f"PUT /{index}/_mapping adds it in place (documents written before lack it), or {_reindex(table)}"
            drifts.append(Drift(where, "declared in tables.json but not in the index", fix))
            continue
        if _field_type(spec) != _field_type(found):
            problem = f"is {_field_type(found)!r} in the index, {_field_type(spec)!r} in tables.json"
            drifts.append(Drift(where, problem + " (OpenSearch cannot change a field's type)", _reindex(table)))
            continue
        for parameter, value in spec.items():
            if parameter in ("type", "properties") or found.get(parameter) == value:
                continue
            problem = f"{parameter} is {found.get(parameter)!r} in the index, {value!r} in tables.json"
            if parameter in IN_PLACE_FIELD_PARAMETERS:
                drifts.append(Drift(where, problem, f"PUT /{index}/_mapping applies it in place, or {_reindex(table)}"))
            else:
                drifts.append(Drift(where, problem + " (not changeable in place)", _reindex(table)))
        if "properties" in spec:
            drifts += mapping_drifts(table, index, spec["properties"], found.get("properties", {}), f"{path}{name}.")
    return drifts


def settings_drifts(table: str, index: str, declared: dict[str, Any], live: dict[str, Any]) -> list[Drift]:
    """The declared settings against the live ones (``live``: flat, as ``flat_settings=true`` answers)."""
    drifts: list[Drift] = []
    for name, value in _flat(declared):
        name = name.removeprefix("index.")
        if name == "gc_deletes":
            continue  # fanout's own
        found = live.get(f"index.{name}")
        if found is not None and _same(value, found):
            continue
        problem = f"is {found!r} in the index, {value!r} in tables.json"
        if name.startswith(STATIC_SETTINGS):
            drifts.append(
                Drift(f"{index} setting {name}", problem + " (set only when an index is created)", _reindex(table))
            )
        else:
            fix = f"PUT /{index}/_settings applies it in place, or {_reindex(table)}"
            drifts.append(Drift(f"{index} setting {name}", problem, fix))
    return drifts


def table_drifts(client: Any, mapping: TableMapping) -> list[Drift]:
    """One table's index against its mapping (nothing while the index does not exist: its first write creates it)."""
    alias = mapping.opensearch.index
    searched = alias_indices(client, alias)
    drifts: list[Drift] = []
    if not searched:
        if not client.indices.exists(index=alias):
            return []
        drifts.append(
            Drift(
                alias,
                "is a concrete index, not an alias (from before fanout wrote through aliases)",
                _reindex(mapping.table),
            )
        )
        searched = (alias,)
    index = searched[0]
    live_mappings = client.indices.get_mapping(index=index)[index]["mappings"]
    live_settings = client.indices.get_settings(index=index, flat_settings=True)[index]["settings"]
    declared = json.loads(mapping.opensearch.index_mappings or "{}")
    drifts += mapping_drifts(mapping.table, index, declared.get("properties", {}), live_mappings.get("properties", {}))
    if "dynamic" in declared and str(declared["dynamic"]).lower() != str(live_mappings.get("dynamic", "true")).lower():
        fix = f"PUT /{index}/_mapping applies it in place, or {_reindex(mapping.table)}"
        drifts.append(Drift(f"{index} dynamic", f"is {live_mappings.get('dynamic', 'true')!r} in the index", fix))
    drifts += settings_drifts(
        mapping.table, index, json.loads(mapping.opensearch.index_settings or "{}"), live_settings
    )
    return drifts


def index_drifts(client: Any, mappings: Mappings) -> list[Drift]:
    """Every OpenSearch-enabled table's index against tables.json."""
    drifts: list[Drift] = []
    for name in sorted(mappings.tables):
        mapping = mappings.tables[name]
        if mapping.opensearch.enabled:
            drifts += table_drifts(client, mapping)
    return drifts
