"""A compact, in-memory, OpenSearch-compatible HTTP server for the local stack and tests.

It reproduces the documented behaviour of the parts of the OpenSearch 2.x REST API that fanout
uses, and nothing more: index admin (create with settings and mappings, get, exists, delete,
``_mapping``, ``_settings``), the document APIs (index, create, get, exists, ``_source``, delete,
update) with internal and external versioning, ``if_seq_no``/``if_primary_term`` and delete
tombstones kept for ``index.gc_deletes``; ``_bulk``, ``_refresh``, ``_count`` and ``_search``
with a small query DSL. Errors use the OpenSearch error envelope.

Deliberate simplifications:

* one shard per index, primary term always 1, no replicas ever assigned (``_shards`` says so);
* every write is searchable at once (``refresh`` is validated but changes nothing);
* scores are not BM25: ``match`` scores the number of distinct query terms found, other
  query-context leaves score 1.0 and filter context 0.0;
* the text analyzer approximates the ``standard`` analyzer (see ``analyze``);
* ``search_after`` takes the sort values of the last hit of the previous page and returns the
  hits strictly after them in the sort order (documented rules: a ``sort`` is required, one value
  per sort key, ``from`` must be 0 or -1); values are compared as given, after the same
  coercion the sort applies (numbers, keyword strings, ``_id``);
* a search whose query pins ``_id``s (``ids``, alone or in a ``bool`` must/filter) evaluates only
  those documents, and one sorted on ``_id`` alone walks an ``_id``-ordered list from its
  ``search_after`` point: same hits, at the cost of the page rather than of the whole index
  (reconcile pages through every document of a 100k-document index this way);
* search body keys and queries outside ``SEARCH_KEYS``/``QUERIES`` are rejected with a 400
  rather than silently ignored.

Run as a process (prints ``listening on http://HOST:PORT``, stops on SIGTERM/SIGINT)::

    python local/opensearch_server.py --host 127.0.0.1 --port 9200      # --port 0: any free port

or in-process::

    srv = start_server("127.0.0.1", 0)   # srv.url == "http://127.0.0.1:<port>"
    srv.shutdown()

Standard library only.
"""

from __future__ import annotations

import argparse
import base64
import bisect
import copy
import datetime as dt
import functools
import hashlib
import itertools
import json
import random
import re
import signal
import socket
import threading
import time
import unicodedata
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, unquote, urlsplit

VERSION_NUMBER = "2.17.0"
VERSION_ID = "136387827"  # the internal id of 2.17.0, shown as index.version.created
PRIMARY_TERM = 1
DEFAULT_GC_DELETES = "60s"
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
QUERIES = ("match_all", "term", "terms", "ids", "match", "bool", "range", "exists", "function_score")
SEARCH_KEYS = {"query", "size", "from", "sort", "_source", "track_total_hits", "search_after"}


# ----------------------------------------------------------------------------------------- errors


class ApiError(Exception):
    """An OpenSearch exception, rendered as ``{"error": {"root_cause": [...], "type", "reason", ...},
    "status"}``; ``cause()`` is also the ``error`` object of a failed ``_bulk`` item."""

    def __init__(self, status: int, type_: str, reason: str, **extra: object) -> None:
        super().__init__(reason)
        self.status, self.type, self.reason, self.extra = status, type_, reason, extra

    def cause(self) -> dict:
        return {"type": self.type, "reason": self.reason, **self.extra}

    def body(self) -> dict:
        return {"error": {"root_cause": [self.cause()], **self.cause()}, "status": self.status}


def bad_request(reason: str, type_: str = "illegal_argument_exception") -> ApiError:
    return ApiError(400, type_, reason)


def validation_error(*problems: str) -> ApiError:
    """``ActionRequestValidationException``: ``Validation Failed: 1: first;2: second;``."""
    text = "".join(f"{n}: {problem};" for n, problem in enumerate(problems, 1))
    return bad_request(f"Validation Failed: {text}", "action_request_validation_exception")


def index_not_found(name: str) -> ApiError:
    extra = {"resource.type": "index_or_alias", "resource.id": name, "index_uuid": "_na_", "index": name}
    return ApiError(404, "index_not_found_exception", f"no such index [{name}]", **extra)


# ----------------------------------------------------------------------------------------- values

_DATE_RE = re.compile(
    r"(?P<y>\d{4})(?:-(?P<mo>\d{2})(?:-(?P<d>\d{2})(?:T(?P<h>\d{2})(?::(?P<mi>\d{2})"
    r"(?::(?P<s>\d{2})(?:[.,](?P<f>\d{1,9}))?)?)?(?P<tz>Z|[+-]\d{2}(?::?\d{2})?)?)?)?)?"
)
_TIME_UNITS = {"nanos": 1e-9, "micros": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_date(value: object, round_up: bool = False) -> int | None:
    """Epoch millis for the default date format ``strict_date_optional_time||epoch_millis``.

    ``round_up`` is how ``gt`` and ``lte`` parse a range bound ("Missing date components" in the
    range query docs): a missing month or day is still 01, but missing hours, minutes, seconds
    and fractions take their maximum (``"lte": "2024-01-31"`` means up to 23:59:59.999).
    """
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return int(value)
    m = _DATE_RE.fullmatch(value) if isinstance(value, str) else None
    if m is None:
        return int(value) if isinstance(value, str) and re.fullmatch(r"-?\d+", value) else None
    g = m.groupdict()
    tz: dt.tzinfo = dt.UTC
    if g["tz"] and g["tz"] != "Z":
        hours, minutes = int(g["tz"][1:3]), int(g["tz"][-2:] if len(g["tz"]) > 3 else 0)
        tz = dt.timezone((-1 if g["tz"][0] == "-" else 1) * dt.timedelta(hours=hours, minutes=minutes))
    up = round_up and not g["f"]
    fields = (("y", 0), ("mo", 1), ("d", 1), ("h", 23 if up else 0), ("mi", 59 if up else 0), ("s", 59 if up else 0))
    micros = 999_999 if up else int((g["f"] or "0").ljust(6, "0")[:6])
    try:
        moment = dt.datetime(*(int(g[k] or default) for k, default in fields), micros, tzinfo=tz)
    except ValueError:
        return None
    return (moment - EPOCH) // dt.timedelta(milliseconds=1)


def parse_time_value(setting: str, value: object) -> float:
    """Seconds for an OpenSearch time value such as ``60s``, ``500ms``, ``1h``, ``0`` or ``-1``."""
    m = re.fullmatch(r"(-?\d+(?:\.\d+)?)(nanos|micros|ms|s|m|h|d)?", str(value).strip())
    if m is None or (m.group(2) is None and m.group(1) not in ("0", "-1")):
        reason = (
            f"failed to parse setting [{setting}] with value [{value}] as a time value: unit is missing or unrecognized"
        )
        raise bad_request(reason)
    return float(m.group(1)) * _TIME_UNITS[m.group(2) or "s"]


def _alone(ch: str) -> bool:
    """The standard tokenizer (UAX #29) makes each Han ideograph and each hiragana a token."""
    cp = ord(ch)
    return 0x3040 <= cp <= 0x309F or 0x3400 <= cp <= 0x4DBF or 0x4E00 <= cp <= 0x9FFF or 0xF900 <= cp <= 0xFAFF


def _word_char(ch: str) -> bool:
    return unicodedata.category(ch)[0] in "LNM" or ch == "_"


def analyze(text: str) -> list[str]:
    """Approximate the ``standard`` analyzer: split on Unicode word boundaries, then lowercase.

    Letters, digits, combining marks and ``_`` make words; ``.``, ``'`` and ``’`` between word
    characters stay inside the word (``example.com``, ``o'neil``); CJK ideographs and hiragana
    are one token each (``東京`` -> ``東``, ``京``); anything else separates tokens.
    """
    tokens, word = [], ""
    for i, ch in enumerate(text):
        joins = ch in ".'’" and word and i + 1 < len(text) and _word_char(text[i + 1]) and not _alone(text[i + 1])
        if _word_char(ch) and not _alone(ch) or joins:
            word += ch
            continue
        tokens += [word] if word else []
        tokens += [ch] if _alone(ch) else []
        word = ""
    return [t.lower() for t in tokens + ([word] if word else [])]


def keyword_value(value: object) -> str:
    """A JSON scalar as a ``keyword`` field indexes it (numbers and booleans as their JSON text)."""
    return value if isinstance(value, str) else json.dumps(value)


def source_values(source: object, path: str) -> list:
    """The leaf values at a dotted path, through objects, arrays and keys containing dots."""
    out: list = []

    def walk(node: object, parts: list[str]) -> None:
        if isinstance(node, list):
            for item in node:
                walk(item, parts)
        elif not parts:
            out.extend([] if node is None else [node])
        elif isinstance(node, dict):
            for i in range(1, len(parts) + 1):
                if ".".join(parts[:i]) in node:
                    walk(node[".".join(parts[:i])], parts[i:])

    walk(source, path.split("."))
    return out


def deep_merge(target: dict, partial: dict) -> dict:
    """The update API's ``doc`` merge: objects merge recursively, anything else (arrays too) is replaced."""
    for key, value in partial.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            deep_merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)
    return target


@functools.lru_cache(maxsize=256)
def _glob(pattern: str) -> re.Pattern:
    return re.compile(".*".join(map(re.escape, pattern.split("*"))))


def filter_source(node: object, includes: list[str], excludes: list[str], path: str = "", kept: bool = False):
    """``_source`` filtering: keep a field if an include pattern matches it or a parent (or there are
    no includes) and no exclude pattern matches it; patterns may use ``*``."""
    if isinstance(node, list):
        items = [filter_source(v, includes, excludes, path, kept) for v in node]
        return items if kept else [v for v in items if isinstance(v, (dict, list)) and v]
    if not isinstance(node, dict):
        return node
    out = {}
    for key, value in node.items():
        p = f"{path}.{key}" if path else key
        if any(_glob(e).fullmatch(p) for e in excludes):
            continue
        keep = kept or not includes or any(_glob(i).fullmatch(p) for i in includes)
        below = any(_glob(i).match(p + ".") or i.startswith(p + ".") for i in includes)
        if keep or (below and isinstance(value, (dict, list))):
            filtered = filter_source(value, includes, excludes, p, keep)
            if keep or filtered:
                out[key] = filtered
    return out


# --------------------------------------------------------------------------------------- settings


def flatten_settings(settings: dict, prefix: str = "") -> dict[str, object]:
    """Nested (``{"index": {"gc_deletes": "1h"}}``) or flat (``{"index.gc_deletes": "1h"}``) settings
    as flat ``index.*`` keys with string values, which is how OpenSearch stores and returns them."""
    flat: dict[str, object] = {}
    for key, value in settings.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten_settings(value, name + "."))
        else:
            name = name if name.startswith("index.") else "index." + name
            flat[name] = [keyword_value(v) for v in value] if isinstance(value, list) else keyword_value(value)
    return flat


def nest_settings(flat: dict[str, object]) -> dict:
    nested: dict = {}
    for key, value in sorted(flat.items()):
        *parents, leaf = key.split(".")
        functools.reduce(lambda node, part: node.setdefault(part, {}), parents, nested)[leaf] = value
    return nested


# --------------------------------------------------------------------------------------- mappings

_NUMERIC = {"long", "integer", "short", "byte", "double", "float", "half_float", "scaled_float", "unsigned_long"}


@dataclass(frozen=True)
class Field:
    """A searchable field: its mapping type and where its values are in ``_source`` (a multi-field
    such as ``title.keyword`` reads the values of ``title``)."""

    type: str
    source_path: str
    ignore_above: int | None = None

    def terms(self, source: dict) -> list:
        """What the field indexes for a document: tokens (text) or typed values."""
        out: list = []
        for raw in source_values(source, self.source_path):
            value = None if isinstance(raw, dict) else self.coerce(raw)
            if isinstance(value, list):
                out += value
            elif value is not None and not (isinstance(value, str) and len(value) > (self.ignore_above or 1e9)):
                out.append(value)
        return out

    def coerce(self, value: object) -> object:
        """A JSON value as this field type indexes it, or ``None`` if it cannot be."""
        if self.type == "text":
            return analyze(keyword_value(value))
        if self.type in _NUMERIC:
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return value
            text = str(value).strip() if isinstance(value, str) else ""
            try:
                return int(text) if re.fullmatch(r"-?\d+", text) else float(text)
            except ValueError:
                return None
        if self.type == "boolean":
            return {"true": True, "false": False}.get(keyword_value(value))
        if self.type in ("date", "date_nanos"):
            return parse_date(value)
        return keyword_value(value)


class Mapping:
    """Index mappings plus dynamic mapping of new fields, as OpenSearch does by default: strings
    become ``text`` with a ``keyword`` sub-field (``ignore_above: 256``), or ``date`` when date
    detection matches; integers ``long``, other numbers ``float``, booleans ``boolean``, objects
    ``object``. ``"dynamic": false`` leaves new fields unmapped (and so unsearchable); ``"strict"``
    rejects a document that has them."""

    def __init__(self, body: object = None) -> None:
        if not isinstance(body or {}, dict):
            raise bad_request("mappings must be an object", "mapper_parsing_exception")
        self.body: dict = copy.deepcopy(body or {})
        self.fields: dict[str, Field] = {}
        self._collect(self.body.get("properties", {}), "")

    def _collect(self, properties: dict, prefix: str) -> None:
        for name, spec in properties.items():
            path = prefix + name
            if "properties" in spec or spec.get("type", "object") in ("object", "nested"):
                self.fields[path] = Field("object", path)
                self._collect(spec.get("properties", {}), path + ".")
                continue
            self.fields[path] = Field(spec["type"], path, spec.get("ignore_above"))
            for sub, sub_spec in spec.get("fields", {}).items():
                self.fields[f"{path}.{sub}"] = Field(
                    sub_spec.get("type", "keyword"), path, sub_spec.get("ignore_above")
                )

    def with_document(self, source: dict) -> Mapping | None:
        """The mapping after mapping ``source``'s new fields, or ``None`` if nothing is new."""
        body = copy.deepcopy(self.body)
        return Mapping(body) if self._learn(body, source, str(body.get("dynamic", True)), "_doc") else None

    def _learn(self, node: dict, obj: dict, dynamic: str, where: str) -> bool:
        changed = False
        for key, value in obj.items():
            name, *rest = key.split(".")
            for part in reversed(rest):  # {"a.b": 1} is mapped like {"a": {"b": 1}}
                value = {part: value}
            values = value if isinstance(value, list) else [value]
            sample = next((v for v in values if v is not None), None)
            spec = node.get("properties", {}).get(name)
            if spec is None:
                if sample is None or dynamic.lower() == "false":
                    continue
                if dynamic.lower() == "strict":
                    reason = f"mapping set to strict, dynamic introduction of [{name}] within [{where}] is not allowed"
                    raise bad_request(reason, "strict_dynamic_mapping_exception")
                spec = node.setdefault("properties", {})[name] = self._infer(sample)
                changed = True
            if "properties" in spec or spec.get("type") in ("object", "nested"):
                for item in (v for v in values if isinstance(v, dict)):
                    path = name if where == "_doc" else f"{where}.{name}"
                    changed |= self._learn(spec, item, str(spec.get("dynamic", dynamic)), path)
        return changed

    @staticmethod
    def _infer(sample: object) -> dict:
        if isinstance(sample, (bool, int, float, dict)):
            kind = {bool: "boolean", int: "long", float: "float", dict: "object"}[type(sample)]
            return {"properties": {}} if kind == "object" else {"type": kind}
        text = str(sample)
        # date_detection only tries strings with more than one '-', ':' or '/' in them
        if max(text.count("-"), text.count(":"), text.count("/")) > 1 and parse_date(text) is not None:
            return {"type": "date"}
        return {"type": "text", "fields": {"keyword": {"type": "keyword", "ignore_above": 256}}}


# -------------------------------------------------------------------------------------- documents


@dataclass
class Doc:
    source: dict
    version: int
    seq_no: int


@dataclass
class Tombstone:
    """What a delete leaves behind: the version it reached, remembered for ``index.gc_deletes``."""

    version: int
    seq_no: int
    deleted_at: float


@dataclass
class WriteParams:
    """The concurrency parameters of one write (URL parameters or ``_bulk`` metadata)."""

    op_type: str = "index"
    version: int | None = None
    version_type: str = "internal"
    if_seq_no: int | None = None
    if_primary_term: int | None = None

    @classmethod
    def parse(cls, values: dict, op_type: str = "index") -> WriteParams:
        def long(name: str) -> int | None:
            try:
                return None if values.get(name) is None else int(values[name])
            except (TypeError, ValueError):
                raise bad_request(f"Failed to parse long parameter [{name}] with value [{values[name]}]") from None

        version_type = str(values.get("version_type") or "internal").lower()
        if version_type not in ("internal", "external", "external_gte"):
            raise bad_request(f"No version type match [{values.get('version_type')}]")
        op = str(values.get("op_type") or op_type).lower()
        if op not in ("index", "create"):
            raise bad_request(f"opType must be 'create' or 'index', found: [{op}]")
        return cls(op, long("version"), version_type, long("if_seq_no"), long("if_primary_term"))

    @property
    def external(self) -> bool:
        return self.version_type != "internal"

    def problems(self, doc_id: str | None, is_index: bool = True) -> list[str]:
        """The rules of ``IndexRequest.validate``, ``DeleteRequest.validate`` and
        ``DocWriteRequest.validateSeqNoBasedCASParams``."""
        if self.op_type == "create" and is_index:
            if self.external:
                return ["create operations only support internal versioning. use index instead"]
            if self.version is not None:
                return ["create operations do not support explicit versions. use index instead"]
            if self.if_seq_no is not None or self.if_primary_term is not None:
                return ["create operations do not support compare and set. use index instead"]
        found = []
        if self.external and (self.version is None or self.version < 0):
            version = -3 if self.version is None else self.version  # -3 is "match any"
            found.append(f"illegal version value [{version}] for version type [{self.version_type.upper()}]")
        if not self.external and self.version is not None:
            found.append(
                "internal versioning can not be used for optimistic concurrency control. "
                "Please use `if_seq_no` and `if_primary_term` instead"
            )
        if self.if_seq_no is not None and (self.external or self.version is not None):
            found.append("compare and write operations can not use versioning")
        if self.if_seq_no is not None and self.if_primary_term is None:
            found.append("ifSeqNo is set, but primary term is [0]")
        if self.if_primary_term is not None and self.if_seq_no is None:
            found.append(f"ifSeqNo is unassigned, but primary term is [{self.if_primary_term}]")
        if doc_id is not None and len(doc_id.encode()) > 512:
            found.append(f"id [{doc_id}] is too long, must be no longer than 512 bytes but was: {len(doc_id.encode())}")
        return found

    def validate(self, doc_id: str | None, is_index: bool = True) -> None:
        if problems := self.problems(doc_id, is_index):
            raise validation_error(*problems)


class Index:
    """One index, with a single shard: documents in index order, tombstones and the ``_seq_no``
    counter. Implements the engine rules documented for the index, delete and update APIs."""

    def __init__(self, name: str, settings: dict | None = None, mappings: object = None) -> None:
        self.name = name
        self.uuid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        self.settings: dict[str, object] = {"index.number_of_shards": "1", "index.number_of_replicas": "1"}
        self.update_settings(settings or {})
        created = str(int(time.time() * 1000))
        self.settings.update({"index.uuid": self.uuid, "index.provided_name": name, "index.creation_date": created})
        self.settings["index.version.created"] = VERSION_ID
        self.mapping = Mapping(mappings)
        self.docs: dict[str, Doc] = {}
        self.tombstones: dict[str, Tombstone] = {}
        self.next_seq_no = 0
        self._sorted_ids: list[str] | None = None  # every _id in _id order, built by the first _id sort

    def ids_in_order(self) -> list[str]:
        """Every document ``_id``, in ``_id`` order (what a sort on ``_id`` walks). Built once, then
        kept in step by the writes, so paging a big index by ``_id`` costs a page, not an index."""
        if self._sorted_ids is None:
            self._sorted_ids = sorted(self.docs)
        return self._sorted_ids

    def _track_id(self, doc_id: str, present: bool) -> None:
        if self._sorted_ids is None:
            return
        at = bisect.bisect_left(self._sorted_ids, doc_id)
        there = at < len(self._sorted_ids) and self._sorted_ids[at] == doc_id
        if present and not there:
            self._sorted_ids.insert(at, doc_id)
        elif there and not present:
            del self._sorted_ids[at]

    def update_settings(self, settings: dict) -> None:
        """Store settings as given (normalised); ``null`` resets one to its default."""
        if not isinstance(settings, dict):
            raise bad_request("settings must be an object", "settings_exception")
        flat = flatten_settings(settings)
        if flat.get("index.gc_deletes", "null") != "null":
            parse_time_value("index.gc_deletes", flat["index.gc_deletes"])
        for key, value in flat.items():
            if value == "null":
                self.settings.pop(key, None)
            else:
                self.settings[key] = value

    @property
    def shards(self) -> int:
        return int(str(self.settings["index.number_of_shards"]))

    def write_shards(self) -> dict:
        """``_shards`` of a write: the primary succeeded; replicas are never assigned on one node."""
        return {"total": 1 + int(str(self.settings.get("index.number_of_replicas", 1))), "successful": 1, "failed": 0}

    def describe(self) -> dict:
        return {"aliases": {}, "mappings": self.mapping.body, "settings": nest_settings(self.settings)}

    # ---- versions

    def _tombstone(self, doc_id: str) -> Tombstone | None:
        """The live tombstone of ``doc_id``; one older than ``index.gc_deletes`` is forgotten."""
        stone = self.tombstones.get(doc_id)
        gc_deletes = parse_time_value("index.gc_deletes", self.settings.get("index.gc_deletes", DEFAULT_GC_DELETES))
        if stone is not None and time.monotonic() - stone.deleted_at > gc_deletes:
            del self.tombstones[doc_id]
            return None
        return stone

    def _conflict(self, doc_id: str, explanation: str) -> ApiError:
        reason = f"[{doc_id}]: version conflict, {explanation}"
        return ApiError(
            409, "version_conflict_engine_exception", reason, index=self.name, shard="0", index_uuid=self.uuid
        )

    def _next_version(self, doc_id: str, params: WriteParams) -> int:
        """Check ``if_seq_no``/``if_primary_term``, ``op_type=create`` and the version type, and
        return the version the write gets. The current version is the live document's, else the
        live tombstone's. ``external`` needs a strictly higher version, ``external_gte`` a higher
        or equal one, and the write takes it; ``internal`` adds one to the current version."""
        doc = self.docs.get(doc_id)
        if params.if_seq_no is not None:
            wanted = f"required seqNo [{params.if_seq_no}], primary term [{params.if_primary_term}]."
            if doc is None:
                raise self._conflict(doc_id, f"{wanted} but no document was found")
            if doc.seq_no != params.if_seq_no or params.if_primary_term != PRIMARY_TERM:
                found = f"current document has seqNo [{doc.seq_no}] and primary term [{PRIMARY_TERM}]"
                raise self._conflict(doc_id, f"{wanted} {found}")
        if params.op_type == "create" and doc is not None:
            raise self._conflict(doc_id, f"document already exists (current version [{doc.version}])")
        stone = self._tombstone(doc_id) if doc is None else None
        current = doc.version if doc else stone.version if stone else None
        if not params.external:
            return (current or 0) + 1
        assert params.version is not None
        if current is not None and params.version_type == "external" and current >= params.version:
            raise self._conflict(
                doc_id, f"current version [{current}] is higher or equal to the one provided [{params.version}]"
            )
        if current is not None and params.version_type == "external_gte" and current > params.version:
            raise self._conflict(
                doc_id, f"current version [{current}] is higher than the one provided [{params.version}]"
            )
        return params.version

    def _take_seq_no(self) -> int:
        """The next ``_seq_no`` (every index or delete takes one); now and then drop dead tombstones."""
        self.next_seq_no += 1
        if self.next_seq_no % 1024 == 0:
            for doc_id in list(self.tombstones):
                self._tombstone(doc_id)
        return self.next_seq_no - 1

    def _result(self, doc_id: str, version: int, result: str, seq_no: int) -> dict:
        return {
            "_index": self.name, "_id": doc_id, "_version": version, "result": result,
            "_shards": self.write_shards(), "_seq_no": seq_no, "_primary_term": PRIMARY_TERM,
        }  # fmt: skip

    # ---- operations

    def index(self, doc_id: str, source: object, params: WriteParams) -> tuple[int, dict]:
        """The index API: 201 ``created`` or 200 ``updated``."""
        if not isinstance(source, dict):
            raise bad_request("failed to parse, document is not a JSON object", "mapper_parsing_exception")
        new_mapping = self.mapping.with_document(source)
        version = self._next_version(doc_id, params)
        self.mapping = new_mapping or self.mapping
        existed = self.docs.pop(doc_id, None) is not None  # re-added last, as a Lucene update is
        seq_no = self._take_seq_no()
        self.docs[doc_id] = Doc(copy.deepcopy(source), version, seq_no)
        self.tombstones.pop(doc_id, None)
        if not existed:
            self._track_id(doc_id, present=True)
        return (
            (200, self._result(doc_id, version, "updated", seq_no))
            if existed
            else (201, self._result(doc_id, version, "created", seq_no))
        )

    def delete(self, doc_id: str, params: WriteParams) -> tuple[int, dict]:
        """The delete API: 200 ``deleted`` or 404 ``not_found``. Either way the version moves on
        (or becomes the external one) and a tombstone keeps it for ``index.gc_deletes``."""
        version = self._next_version(doc_id, params)
        found = self.docs.pop(doc_id, None) is not None
        if found:
            self._track_id(doc_id, present=False)
        seq_no = self._take_seq_no()
        self.tombstones[doc_id] = Tombstone(version, seq_no, time.monotonic())
        return (
            (200, self._result(doc_id, version, "deleted", seq_no))
            if found
            else (404, self._result(doc_id, version, "not_found", seq_no))
        )

    def update(self, doc_id: str, body: dict, params: WriteParams) -> tuple[int, dict]:
        """The update API: ``doc`` merges into the document; when it is missing, ``doc_as_upsert``
        or ``upsert`` creates it, else 404 ``document_missing_exception``. With ``detect_noop``
        (default true) an update that changes nothing is a ``noop``."""
        if "script" in body:
            raise bad_request("scripted updates are not supported by this local OpenSearch stand-in")
        partial = body.get("doc")
        if not isinstance(partial, dict):
            raise validation_error("script or doc is missing")
        doc = self.docs.get(doc_id)
        if doc is None:
            upsert = partial if body.get("doc_as_upsert") else body.get("upsert")
            if isinstance(upsert, dict):
                return self.index(doc_id, upsert, WriteParams("create"))
            reason = f"[{doc_id}]: document missing"
            raise ApiError(404, "document_missing_exception", reason, index=self.name, shard="0", index_uuid=self.uuid)
        merged = deep_merge(copy.deepcopy(doc.source), partial)
        cas = WriteParams(if_seq_no=params.if_seq_no, if_primary_term=params.if_primary_term)
        if body.get("detect_noop", True) and merged == doc.source:
            self._next_version(doc_id, cas)  # if_seq_no still has to match
            noop = self._result(doc_id, doc.version, "noop", doc.seq_no)
            return 200, {**noop, "_shards": {"total": 0, "successful": 0, "failed": 0}}
        return self.index(doc_id, merged, cas)

    def get(self, doc_id: str) -> dict:
        doc = self.docs.get(doc_id)
        if doc is None:
            return {"_index": self.name, "_id": doc_id, "found": False}
        return {
            "_index": self.name, "_id": doc_id, "_version": doc.version, "_seq_no": doc.seq_no,
            "_primary_term": PRIMARY_TERM, "found": True, "_source": doc.source,
        }  # fmt: skip


# ---------------------------------------------------------------------------------------- queries


def _one_field(query: str, clause: object) -> tuple[str, object]:
    if not isinstance(clause, dict) or len(clause) != 1:
        raise bad_request(
            f"[{query}] query doesn't support multiple fields, found none or several", "parsing_exception"
        )
    return next(iter(clause.items()))


def _as_list(value: object) -> list:
    return [] if value is None else value if isinstance(value, list) else [value]


class QueryEvaluator:
    """Evaluates the query DSL subset in ``QUERIES`` on one index: ``score(doc_id, source)`` is
    the document's score, or ``None`` when it does not match."""

    def __init__(self, query: object, mapping: Mapping) -> None:
        self.query = {"match_all": {}} if query is None else query
        self.mapping = mapping
        self._id_sets: dict[int, set[str]] = {}  # per ids clause (by identity): its values as a set
        self._search_seed = random.getrandbits(64)  # random_score without a seed: one draw per search

    def score(self, doc_id: str, source: dict) -> float | None:
        return self._eval(self.query, doc_id, source)

    def matches_everything(self) -> bool:
        return self.query == {"match_all": {}}

    def pinned_ids(self) -> set[str] | None:
        """The only ``_id``s that can match when the query pins them (an ``ids`` query, or a ``bool``
        with one in ``must``/``filter``), else ``None``. Lets a search evaluate those documents
        instead of the whole index; the query is still evaluated on each of them."""
        return self._pinned(self.query)

    def _pinned(self, query: object) -> set[str] | None:
        if not isinstance(query, dict) or len(query) != 1:
            return None
        kind, clause = next(iter(query.items()))
        if kind == "ids" and isinstance(clause, dict):
            return self._id_set(clause)
        if kind == "bool" and isinstance(clause, dict):
            required = _as_list(clause.get("must")) + _as_list(clause.get("filter"))
            sets = [pinned for q in required if (pinned := self._pinned(q)) is not None]
            return set.intersection(*sets) if sets else None
        return None

    def _id_set(self, clause: dict) -> set[str]:
        values = self._id_sets.get(id(clause))
        if values is None:
            values = self._id_sets[id(clause)] = {str(v) for v in _as_list(clause.get("values"))}
        return values

    def _eval(self, query: object, doc_id: str, source: dict) -> float | None:
        if not isinstance(query, dict) or len(query) != 1:
            raise bad_request("a query must be an object with exactly one query name", "parsing_exception")
        kind, clause = next(iter(query.items()))
        if kind not in QUERIES:
            supported = ", ".join(QUERIES)
            raise bad_request(
                f"unknown query [{kind}] (this OpenSearch stand-in supports {supported})", "parsing_exception"
            )
        return getattr(self, "_" + kind)(clause, doc_id, source)

    def _field(self, name: str) -> Field | None:
        field = self.mapping.fields.get(name)
        return None if field is None or field.type == "object" else field

    def _typed(self, field: Field, value: object) -> object:
        """A query value in the field's type (``term`` on a text field uses it unanalyzed)."""
        typed = keyword_value(value) if field.type == "text" else field.coerce(value)
        if typed is None:
            raise bad_request(
                f"failed to create query: [{value}] is not a valid [{field.type}]", "query_shard_exception"
            )
        return typed

    def _match_all(self, clause: object, doc_id: str, source: dict) -> float:
        return 1.0

    def _function_score(self, clause: dict, doc_id: str, source: dict) -> float | None:
        """``function_score`` with ``random_score``, the one function supported: a score uniform in
        [0, 1), a function of ``seed`` and the document (same seed, same documents: same order; no
        seed: a new draw per search), multiplied by the query's score (``boost_mode`` multiply,
        the default) or replacing it (``replace``)."""
        unknown = set(clause) - {"query", "random_score", "boost_mode"} if isinstance(clause, dict) else {"?"}
        if unknown or not isinstance(clause.get("random_score"), dict):
            raise bad_request(
                "[function_score] only random_score (with query, boost_mode) is supported by this stand-in",
                "parsing_exception",
            )
        mode = clause.get("boost_mode", "multiply")
        if mode not in ("multiply", "replace"):
            raise bad_request(f"[function_score] boost_mode [{mode}] is not supported by this stand-in")
        score = self._eval(clause.get("query", {"match_all": {}}), doc_id, source)
        if score is None:
            return None
        spec = clause["random_score"]
        seed = self._search_seed if spec.get("seed") is None else spec["seed"]
        digest = hashlib.blake2b(f"{seed}\x00{doc_id}".encode(), digest_size=8).digest()
        drawn = int.from_bytes(digest, "big") / 2**64
        return drawn if mode == "replace" else score * drawn

    def _ids(self, clause: dict, doc_id: str, source: dict) -> float | None:
        return 1.0 if doc_id in self._id_set(clause) else None

    def _term(self, clause: dict, doc_id: str, source: dict) -> float | None:
        name, value = _one_field("term", clause)
        return self._terms({name: [value.get("value") if isinstance(value, dict) else value]}, doc_id, source)

    def _terms(self, clause: dict, doc_id: str, source: dict) -> float | None:
        name, values = _one_field("terms", {k: v for k, v in clause.items() if k != "boost"})
        if not isinstance(values, list):
            raise bad_request("[terms] query lookup is not supported by this stand-in", "parsing_exception")
        field = self._field(name)
        if field is None:
            return None
        wanted = {self._typed(field, v) for v in values}
        return 1.0 if any(v in wanted for v in field.terms(source)) else None

    def _match(self, clause: dict, doc_id: str, source: dict) -> float | None:
        """Analyzed full-text match on text fields (``operator`` or/and); exact on other types."""
        name, spec = _one_field("match", clause)
        text, operator = (
            (spec.get("query"), str(spec.get("operator", "or")).lower()) if isinstance(spec, dict) else (spec, "or")
        )
        if text is None:
            raise bad_request("No text specified for text query", "parsing_exception")
        field = self._field(name)
        if field is None or field.type != "text":
            return None if field is None else self._terms({name: [text]}, doc_id, source)
        wanted, present = set(analyze(keyword_value(text))), set(field.terms(source))
        found = len(wanted & present)
        return float(found) if found and (operator != "and" or found == len(wanted)) else None

    def _range(self, clause: dict, doc_id: str, source: dict) -> float | None:
        """``gt``/``gte``/``lt``/``lte`` on numbers, dates (with the documented rounding of
        missing date components) and strings (compared as strings)."""
        name, bounds = _one_field("range", clause)
        field = self._field(name)
        if field is None or not isinstance(bounds, dict):
            return None
        tests = []
        for op in (op for op in ("gt", "gte", "lt", "lte") if bounds.get(op) is not None):
            bound = bounds[op]
            if field.type in ("date", "date_nanos"):
                bound = parse_date(bound, round_up=op in ("gt", "lte"))
                if bound is None:
                    raise bad_request(f"failed to parse date field [{bounds[op]}]", "parse_exception")
            tests.append((op, self._typed(field, bound)))
        values = (
            [keyword_value(v) for v in source_values(source, field.source_path)]
            if field.type == "text"
            else field.terms(source)
        )
        check = {
            "gt": lambda a, b: a > b,
            "gte": lambda a, b: a >= b,
            "lt": lambda a, b: a < b,
            "lte": lambda a, b: a <= b,
        }
        try:
            return 1.0 if any(all(check[op](v, bound) for op, bound in tests) for v in values) else None
        except TypeError:
            return None

    def _exists(self, clause: dict, doc_id: str, source: dict) -> float | None:
        field = self.mapping.fields.get(str(clause.get("field")))
        if field is None:
            return None
        values = source_values(source, field.source_path) if field.type == "object" else field.terms(source)
        return 1.0 if values else None

    def _bool(self, clause: dict, doc_id: str, source: dict) -> float | None:
        """``must`` and ``should`` scores add up; ``filter`` and ``must_not`` do not score. At
        least one ``should`` must match when there is no ``must`` or ``filter`` clause."""
        if "minimum_should_match" in clause:
            raise bad_request("[bool] minimum_should_match is not supported by this stand-in", "parsing_exception")
        must, filters = _as_list(clause.get("must")), _as_list(clause.get("filter"))
        should, must_not = _as_list(clause.get("should")), _as_list(clause.get("must_not"))
        must_scores = [self._eval(q, doc_id, source) for q in must]
        if None in must_scores or any(self._eval(q, doc_id, source) is None for q in filters):
            return None
        if any(self._eval(q, doc_id, source) is not None for q in must_not):
            return None
        should_scores = [s for s in (self._eval(q, doc_id, source) for q in should) if s is not None]
        if should and not (must or filters) and not should_scores:
            return None
        return sum(must_scores) + sum(should_scores)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------------------- search


@dataclass
class SortKey:
    field: str
    descending: bool

    @classmethod
    def parse(cls, sort: object) -> list[SortKey]:
        """``"field"``, ``{"field": "desc"}``, ``{"field": {"order": "desc"}}`` or a list of them;
        ``_score`` sorts descending by default, everything else ascending."""
        keys = []
        for item in _as_list(sort):
            name, spec = (item, {}) if isinstance(item, str) else _one_field("sort", item)
            order = str((spec if isinstance(spec, dict) else {"order": spec}).get("order") or "").lower()
            if order not in ("", "asc", "desc"):
                raise bad_request(f"Unknown SortOrder [{order}]")
            keys.append(cls(name, order == "desc" or (order == "" and name == "_score")))
        return keys

    def value(self, index: Index, doc_id: str, score: float) -> object:
        """The hit's sort value; a multi-valued field uses its min (asc) or max (desc)."""
        if self.field in ("_score", "_id"):
            return score if self.field == "_score" else doc_id
        field = index.mapping.fields.get(self.field)
        if field is None or field.type == "object":
            reason = f"No mapping found for [{self.field}] in order to sort on"
            raise ApiError(400, "query_shard_exception", reason, index=index.name, index_uuid=index.uuid)
        if field.type == "text":
            raise bad_request(
                "Text fields are not optimised for operations that require per-document field data like "
                "aggregations and sorting, so these operations are disabled by default. Please use a keyword "
                f"field instead. Alternatively, set fielddata=true on [{self.field}] in order to load field data "
                "by uninverting the inverted index. Note that this can use significant memory."
            )
        values = [int(v) if isinstance(v, bool) else v for v in field.terms(index.docs[doc_id].source)]
        return (max if self.descending else min)(values) if values else None


def _compare(keys: list[SortKey], a: tuple, b: tuple) -> int:
    """Order two ``(sort_values, position)`` pairs; documents missing a value sort last."""
    for key, x, y in zip(keys, a[0], b[0], strict=True):
        if x != y:
            if x is None or y is None:
                return 1 if x is None else -1
            return (-1 if key.descending else 1) * ((x > y) - (x < y))
    return a[1] - b[1]


def _source_spec(spec: object) -> tuple[list[str], list[str], bool]:
    """``_source``: ``true``/``false``, a field (pattern) or a list of them, or includes/excludes."""
    if isinstance(spec, bool):
        return [], [], spec
    if isinstance(spec, dict):
        return (
            _as_list(spec.get("includes", spec.get("include"))),
            _as_list(spec.get("excludes", spec.get("exclude"))),
            True,
        )
    return [str(s) for s in _as_list(spec)], [], True


Match = tuple["Index", str, float]  # (index, doc_id, score)


def _matches(indices: list[Index], query: object) -> Iterator[Match]:
    """Every matching document, index by index in index order (the order of their last write)."""
    for index in indices:
        evaluator = QueryEvaluator(query, index.mapping)
        pinned = evaluator.pinned_ids()
        if pinned is None:
            candidates: Iterable[tuple[str, Doc]] = index.docs.items()
        else:  # only the named documents can match: look them up instead of evaluating the index
            candidates = sorted(
                ((doc_id, index.docs[doc_id]) for doc_id in pinned if doc_id in index.docs),
                key=lambda item: item[1].seq_no,
            )
        for doc_id, doc in candidates:
            if (score := evaluator.score(doc_id, doc.source)) is not None:
                yield index, doc_id, score


def _id_order_page(
    index: Index, query: object, key: SortKey, after: list | None, wanted: int
) -> Iterator[tuple[list, Match]]:
    """The first ``wanted`` hits of a search sorted on ``_id`` alone, walking the index in ``_id``
    order from the ``search_after`` point: the same hits as sorting every match, at the cost of
    the page. Only for queries that do not pin ids (those are cheap to sort)."""
    evaluator = QueryEvaluator(query, index.mapping)
    ordered = index.ids_in_order()
    if key.descending:
        end = len(ordered) if after is None else bisect.bisect_left(ordered, str(after[0]))
        walk: Iterable[str] = (ordered[i] for i in range(end - 1, -1, -1))
    else:
        begin = 0 if after is None else bisect.bisect_right(ordered, str(after[0]))
        walk = itertools.islice(ordered, begin, None)
    found = 0
    for doc_id in walk:
        if found >= wanted:
            return
        if (score := evaluator.score(doc_id, index.docs[doc_id].source)) is not None:
            found += 1
            yield [doc_id], (index, doc_id, score)


def _count_matches(indices: list[Index], query: object, limit: int | None) -> int:
    """How many documents match, counting no further than ``limit + 1`` (enough to say "gte")."""
    if all(QueryEvaluator(query, index.mapping).matches_everything() for index in indices):
        return sum(len(index.docs) for index in indices)
    stop = None if limit is None else limit + 1
    return sum(1 for _ in itertools.islice(_matches(indices, query), stop))


def run_search(indices: list[Index], body: dict, params: dict, count_only: bool = False) -> dict:
    """``_search`` (hits sorted by score, or by ``sort``, then by index order) or ``_count``."""
    started = time.monotonic()
    for key in set(body) - ({"query"} if count_only else SEARCH_KEYS):
        raise bad_request(f"[{key}] is not supported by this local OpenSearch stand-in", "parsing_exception")
    query = body.get("query")
    shards = sum(index.shards for index in indices)
    shards_header = {"total": shards, "successful": shards, "skipped": 0, "failed": 0}
    if count_only:
        return {"count": sum(1 for _ in _matches(indices, query)), "_shards": shards_header}
    try:
        size, start = int(params.get("size", body.get("size", 10))), int(params.get("from", body.get("from", 0)))
    except (TypeError, ValueError):
        raise bad_request("[size] and [from] must be integers") from None

    keys = SortKey.parse(body.get("sort"))
    after = body.get("search_after")
    if after is not None:
        if start not in (0, -1):
            raise validation_error("`from` parameter must be set to 0 when `search_after` is used.")
        start = 0
        if not keys:
            raise bad_request("Sort must contain at least one field.")
        if not isinstance(after, list) or len(after) != len(keys):
            count = len(after) if isinstance(after, list) else 1
            raise bad_request(f"search_after has {count} value(s) but sort has {len(keys)}.")
    track = body.get("track_total_hits", 10_000)
    limit = None if track is True or track is False else int(track)
    scored = not keys or any(k.field == "_score" for k in keys)
    by_id = [k.field for k in keys] == ["_id"] and len(indices) == 1
    if by_id and QueryEvaluator(query, indices[0].mapping).pinned_ids() is None:
        page = list(_id_order_page(indices[0], query, keys[0], after, start + size))[start:]
        total = _count_matches(indices, query, limit) if track is not False else 0
        max_score = None
    else:
        matches = list(_matches(indices, query))
        if keys:
            rows = [([k.value(*m) for k in keys], n) for n, m in enumerate(matches)]
            rows.sort(key=functools.cmp_to_key(lambda a, b: _compare(keys, a, b)))
            if after is not None:
                # strictly after the given values (ties excluded: the caller passes the last hit's values)
                rows = [row for row in rows if _compare(keys, (row[0], 0), (after, 0)) > 0]
        else:
            rows = sorted(((None, n) for n in range(len(matches))), key=lambda row: -matches[row[1]][2])
        page = [(sort_values, matches[n]) for sort_values, n in rows[start : start + size]]
        total = len(matches)
        max_score = max((m[2] for m in matches), default=None) if scored else None
    includes, excludes, with_source = _source_spec(body.get("_source", True))
    hits = []
    for sort_values, (index, doc_id, score) in page:
        hit: dict = {"_index": index.name, "_id": doc_id, "_score": score if scored else None}
        if with_source:
            hit["_source"] = filter_source(index.docs[doc_id].source, includes, excludes)
        if sort_values is not None:
            hit["sort"] = sort_values
        hits.append(hit)

    result: dict = {}
    if track is not False:
        shown = total if limit is None else min(total, limit)
        result["total"] = {"value": shown, "relation": "eq" if shown == total else "gte"}
    result["max_score"] = max_score
    result["hits"] = hits
    took = int((time.monotonic() - started) * 1000)
    return {"took": took, "timed_out": False, "_shards": shards_header, "hits": result}


# ---------------------------------------------------------------------------------------- cluster


def validate_index_name(name: str) -> None:
    """The index naming restrictions of the create index API."""
    rules = [
        (name != name.lower(), "must be lowercase"),
        (
            any(c in name for c in '\\/*?"<>| ,#'),
            'must not contain the following characters [ , ", *, \\, <, |, ,, >, /, ?]',
        ),
        (":" in name, "must not contain ':'"),
        (name[:1] in ("_", "-", "+"), "must not start with '_', '-', or '+'"),
        (name in ("", ".", ".."), "must not be '.' or '..'"),
        (len(name.encode()) > 255, f"index name is too long, ({len(name.encode())} > 255)"),
    ]
    for broken, rule in rules:
        if broken:
            reason = f"Invalid index name [{name}], {rule}"
            raise ApiError(400, "invalid_index_name_exception", reason, index=name, index_uuid="_na_")


class Cluster:
    """All indices. One lock guards everything: each HTTP request runs while holding it."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.indices: dict[str, Index] = {}

    def create(self, name: str, settings: dict | None = None, mappings: object = None) -> Index:
        validate_index_name(name)
        if name in self.indices:
            uuid_ = self.indices[name].uuid
            reason = f"index [{name}/{uuid_}] already exists"
            raise ApiError(400, "resource_already_exists_exception", reason, index=name, index_uuid=uuid_)
        self.indices[name] = Index(name, settings, mappings)
        return self.indices[name]

    def get(self, name: str, create: bool = False) -> Index:
        """An index by name; ``create`` is automatic index creation on a write (on by default)."""
        if name not in self.indices:
            if not create:
                raise index_not_found(name)
            self.create(name)
        return self.indices[name]

    def resolve(self, expression: str | None) -> list[Index]:
        """Names separated by commas, ``*`` wildcards or ``_all``. A missing name is a 404; a
        wildcard that matches nothing is not."""
        found: dict[str, Index] = {}
        for part in (expression or "_all").split(","):
            if part == "_all" or "*" in part:
                pattern = _glob("*" if part == "_all" else part)
                found.update((n, i) for n, i in sorted(self.indices.items()) if pattern.fullmatch(n))
            else:
                found[part] = self.get(part)
        return list(found.values())


# ------------------------------------------------------------------------------------- REST layer

Response = tuple[int, object]


@dataclass
class Request:
    method: str
    path: str
    params: dict[str, str]
    body: bytes
    cluster: Cluster

    def json(self, required: bool = False, error_type: str = "parse_exception") -> object:
        if not self.body.strip():
            if required:
                raise bad_request("request body is required", "parse_exception")
            return {}
        try:
            return json.loads(self.body)
        except ValueError as exc:
            raise bad_request(f"failed to parse request body: {exc}", error_type) from None

    def json_object(self, required: bool = False, error_type: str = "parse_exception") -> dict:
        body = self.json(required, error_type)
        if not isinstance(body, dict):
            raise bad_request("request body must be a JSON object", error_type)
        return body

    def write_params(self, op_type: str = "index") -> WriteParams:
        """Document write parameters; ``refresh`` is accepted (``true``, ``false``, ``wait_for``)."""
        if self.params.get("refresh") not in (None, "", "true", "false", "wait_for"):
            raise bad_request(f"Unknown value for refresh: [{self.params['refresh']}].")
        return WriteParams.parse(self.params, op_type)


class Router:
    """Routes such as ``/{index}/_doc/{id}``. As in OpenSearch, literal segments win over
    placeholders; a known path with another method is a 405, an unknown path a 400."""

    def __init__(self) -> None:
        self.routes: dict[tuple[str, ...], dict[str, object]] = {}

    def add(self, methods: str, pattern: str, handler: object) -> None:
        key = tuple(part for part in pattern.split("/") if part)
        for method in methods.split("|"):
            self.routes.setdefault(key, {})[method] = handler

    def dispatch(self, request: Request, segments: list[str]) -> Response:
        def fits(pattern: tuple[str, ...]) -> bool:
            pairs = zip(pattern, segments, strict=True)
            return len(pattern) == len(segments) and all(p[0] == "{" or p == s for p, s in pairs)

        candidates = [(tuple(p[0] != "{" for p in pattern), pattern) for pattern in self.routes if fits(pattern)]
        if not candidates:
            return 400, {
                "error": f"no handler found for uri [{request.path}] and method [{request.method}]",
                "status": 400,
            }
        pattern = max(candidates)[1]
        handler = self.routes[pattern].get(request.method)
        if handler is None:
            allowed = ", ".join(sorted(self.routes[pattern]))
            error = (
                f"Incorrect HTTP method for uri [{request.path}] and method [{request.method}], allowed: [{allowed}]"
            )
            return 405, {"error": error, "status": 405}
        args = {p[1:-1]: s for p, s in zip(pattern, segments, strict=True) if p[0] == "{"}
        return handler(request, **args)  # type: ignore[operator]


def _info(req: Request) -> Response:
    version = {
        "distribution": "opensearch", "number": VERSION_NUMBER, "build_type": "tar", "build_hash": "local",
        "build_date": "local", "build_snapshot": False, "lucene_version": "9.11.1",
        "minimum_wire_compatibility_version": "7.10.0", "minimum_index_compatibility_version": "7.0.0",
    }  # fmt: skip
    tagline = "The OpenSearch Project: https://opensearch.org/"
    return 200, {"name": socket.gethostname(), "cluster_name": "fanout-local", "version": version, "tagline": tagline}


def _create_index(req: Request, index: str) -> Response:
    body = req.json_object()
    if unknown := sorted(set(body) - {"settings", "mappings"}):
        raise bad_request(
            f"unknown key [{unknown[0]}] for create index (aliases are not supported here)", "parse_exception"
        )
    req.cluster.create(index, body.get("settings"), body.get("mappings"))
    return 200, {"acknowledged": True, "shards_acknowledged": True, "index": index}


def _get_index(req: Request, index: str) -> Response:
    return 200, {index: req.cluster.get(index).describe()}


def _delete_index(req: Request, index: str) -> Response:
    for target in req.cluster.resolve(index):
        del req.cluster.indices[target.name]
    return 200, {"acknowledged": True}


def _get_mapping(req: Request, index: str) -> Response:
    return 200, {i.name: {"mappings": i.mapping.body} for i in req.cluster.resolve(index)}


def _get_settings(req: Request, index: str) -> Response:
    return 200, {i.name: {"settings": nest_settings(i.settings)} for i in req.cluster.resolve(index)}


def _put_settings(req: Request, index: str) -> Response:
    body = req.json_object(required=True)
    for target in req.cluster.resolve(index):
        target.update_settings(body["settings"] if isinstance(body.get("settings"), dict) else body)
    return 200, {"acknowledged": True}


def _refresh(req: Request, index: str | None = None) -> Response:
    indices = req.cluster.resolve(index)
    total = sum(i.write_shards()["total"] * i.shards for i in indices)
    return 200, {"_shards": {"total": total, "successful": sum(i.shards for i in indices), "failed": 0}}


def _new_id() -> str:
    return base64.urlsafe_b64encode(uuid.uuid4().bytes[:15]).decode()


def _index_doc(req: Request, index: str, id: str | None = None, op_type: str = "index") -> Response:
    """Index API; without an id (``POST /{index}/_doc``) one is generated and ``op_type`` is create."""
    params = req.write_params("create" if id is None else op_type)
    if op_type == "create" and params.op_type != "create":
        raise bad_request(f"opType must be 'create', found: [{params.op_type}]")
    params.validate(id)
    source = req.json(required=True, error_type="mapper_parsing_exception")
    return req.cluster.get(index, create=True).index(id or _new_id(), source, params)


def _create_doc(req: Request, index: str, id: str) -> Response:
    return _index_doc(req, index, id, op_type="create")


def _get_doc(req: Request, index: str, id: str) -> Response:
    body = req.cluster.get(index).get(id)
    return (200 if body["found"] else 404), body


def _get_source(req: Request, index: str, id: str) -> Response:
    body = req.cluster.get(index).get(id)
    if not body["found"]:
        raise ApiError(404, "resource_not_found_exception", f"Document not found [{index}]/[{id}]")
    return 200, body["_source"]


def _delete_doc(req: Request, index: str, id: str) -> Response:
    """Delete API. Only a delete with an external version creates a missing index."""
    params = req.write_params()
    params.validate(id, is_index=False)
    return req.cluster.get(index, create=params.external).delete(id, params)


def _update_doc(req: Request, index: str, id: str) -> Response:
    params = req.write_params()
    if "version" in req.params or "version_type" in req.params:
        raise validation_error(
            "internal versioning can not be used for optimistic concurrency control. "
            "Please use `if_seq_no` and `if_primary_term` instead"
        )
    params.validate(id, is_index=False)
    return req.cluster.get(index, create=True).update(id, req.json_object(required=True), params)


def _search(req: Request, index: str | None = None) -> Response:
    return 200, run_search(req.cluster.resolve(index), req.json_object(error_type="parsing_exception"), req.params)


def _count(req: Request, index: str | None = None) -> Response:
    body = req.json_object(error_type="parsing_exception")
    return 200, run_search(req.cluster.resolve(index), body, {}, count_only=True)


def _bulk(req: Request, index: str | None = None) -> Response:
    """``_bulk``: NDJSON action/metadata lines, each index/create/update followed by its source line,
    the whole body ending with a newline. Items are all parsed and validated first (a malformed
    or invalid request fails as a whole), then run one by one: a failed item carries ``status``
    and ``error`` and makes ``errors`` true, without stopping the others."""
    started = time.monotonic()
    req.write_params()  # refresh
    if not req.body.strip():
        raise validation_error("no requests added")
    if not req.body.endswith(b"\n"):
        raise bad_request("The bulk request must be terminated by a newline [\\n]")
    lines, items, problems, n = req.body.split(b"\n")[:-1], [], [], 0
    while n < len(lines):
        if not lines[n].strip():  # blank lines are skipped
            n += 1
            continue
        try:
            action = json.loads(lines[n])
        except ValueError:
            raise bad_request(f"Malformed action/metadata line [{n + 1}], expected a JSON object") from None
        op, meta = next(iter(action.items())) if isinstance(action, dict) and len(action) == 1 else (action, None)
        if op not in ("index", "create", "update", "delete") or not isinstance(meta, dict):
            reason = f"Malformed action/metadata line [{n + 1}], expected field [create], [delete], [index] or [update]"
            raise bad_request(f"{reason} but found [{op}]")
        doc_id = None if meta.get("_id") is None else str(meta["_id"])
        params = WriteParams.parse(meta, "create" if op == "create" or doc_id is None else "index")
        source = lines[n + 1] if op != "delete" and n + 1 < len(lines) else None
        n += 1 if op == "delete" else 2
        if op == "update" and source is not None:
            try:
                source = json.loads(source)
            except ValueError:
                raise bad_request(f"Malformed update request body on line [{n}]", "x_content_parse_exception") from None
        problems += ["index is missing"] if not (meta.get("_index") or index) else []
        problems += ["source is missing"] if op != "delete" and source is None else []
        problems += ["id is missing"] if op in ("update", "delete") and doc_id is None else []
        if op == "update" and params.external:
            problems.append(f"version type [{params.version_type.upper()}] is not supported by the update API")
        problems += params.problems(doc_id, is_index=op in ("index", "create"))
        items.append((op, meta.get("_index") or index, doc_id or _new_id(), params, source))
    if problems:
        raise validation_error(*problems)
    results = [_bulk_item(req.cluster, *item) for item in items]
    errors = any("error" in item for result in results for item in result.values())
    return 200, {"took": int((time.monotonic() - started) * 1000), "errors": errors, "items": results}


def _bulk_item(cluster: Cluster, op: str, index_name: str, doc_id: str, params: WriteParams, source: object) -> dict:
    try:
        target = cluster.get(index_name, create=op != "delete" or params.external)
        if op == "delete":
            status, body = target.delete(doc_id, params)
        elif op == "update":
            status, body = target.update(doc_id, source if isinstance(source, dict) else {}, params)
        else:
            try:
                document = json.loads(source)  # type: ignore[arg-type]
            except ValueError:
                raise bad_request("failed to parse", "mapper_parsing_exception") from None
            status, body = target.index(doc_id, document, params)
        return {op: {**body, "status": status}}
    except ApiError as exc:
        return {op: {"_index": index_name, "_id": doc_id, "status": exc.status, "error": exc.cause()}}


def build_router() -> Router:
    router = Router()
    routes = [
        ("GET", "/", _info), ("HEAD", "/", lambda req: (200, None)),
        ("POST|PUT", "/_bulk", _bulk), ("POST|PUT", "/{index}/_bulk", _bulk),
        ("GET|POST", "/_search", _search), ("GET|POST", "/{index}/_search", _search),
        ("GET|POST", "/_count", _count), ("GET|POST", "/{index}/_count", _count),
        ("GET|POST", "/_refresh", _refresh), ("GET|POST", "/{index}/_refresh", _refresh),
        ("GET", "/{index}/_mapping", _get_mapping),
        ("GET", "/{index}/_settings", _get_settings), ("PUT", "/{index}/_settings", _put_settings),
        ("PUT|POST", "/{index}/_doc/{id}", _index_doc), ("POST", "/{index}/_doc", _index_doc),
        ("GET|HEAD", "/{index}/_doc/{id}", _get_doc), ("DELETE", "/{index}/_doc/{id}", _delete_doc),
        ("PUT|POST", "/{index}/_create/{id}", _create_doc), ("POST", "/{index}/_update/{id}", _update_doc),
        ("GET|HEAD", "/{index}/_source/{id}", _get_source),
        ("PUT", "/{index}", _create_index), ("GET|HEAD", "/{index}", _get_index), ("DELETE", "/{index}", _delete_index),
    ]  # fmt: skip
    for methods, pattern, handler in routes:
        router.add(methods, pattern, handler)
    return router


# ------------------------------------------------------------------------------------ HTTP server


class _Handler(BaseHTTPRequestHandler):
    """HTTP/1.1 with keep-alive: every response carries a Content-Length (HEAD: no body), and
    request bodies are read whole, by Content-Length or chunked."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    wbufsize = -1  # buffered: headers and body leave in one flush, avoiding delayed-ACK stalls
    server: OpenSearchServer

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection, open_=True)

    def finish(self) -> None:
        self.server.track(self.connection, open_=False)
        super().finish()

    def log_message(self, format: str, *args: object) -> None:
        if self.server.log_requests:
            super().log_message(format, *args)

    def _read_body(self) -> bytes:
        if "chunked" not in self.headers.get("Transfer-Encoding", "").lower():
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))
        chunks = []
        while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
            chunks.append(self.rfile.read(size))
            self.rfile.readline()
        while self.rfile.readline().strip():  # trailers
            pass
        return b"".join(chunks)

    def _handle(self) -> None:
        try:
            body = self._read_body()
        except ValueError:
            self.close_connection = True
            return self._send(400, {"error": "malformed request body framing", "status": 400})
        url = urlsplit(self.path)
        request = Request(self.command, url.path, dict(parse_qsl(url.query, True)), body, self.server.cluster)
        content_type = self.headers.get("Content-Type")
        media = (content_type or "").split(";")[0].strip().lower()
        if body and not (media.endswith("json") or media == "application/x-ndjson"):
            error = (
                f"Content-Type header [{content_type}] is not supported"
                if content_type
                else "Content-Type header is missing"
            )
            return self._send(406, {"error": error, "status": 406})
        try:
            with self.server.cluster.lock:
                status, payload = self.server.router.dispatch(request, [unquote(s) for s in url.path.split("/") if s])
        except ApiError as exc:
            status, payload = exc.status, exc.body()
        except Exception as exc:  # noqa: BLE001 - report a bug in this server as a 500, keep the connection
            self.log_error("internal error: %r", exc)
            status, payload = 500, ApiError(500, "exception", repr(exc)).body()
        self._send(status, payload)

    def _send(self, status: int, payload: object) -> None:
        data = b"" if payload is None or self.command == "HEAD" else json.dumps(payload, ensure_ascii=False).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json; charset=UTF-8")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = do_PATCH = do_OPTIONS = _handle


class OpenSearchServer(ThreadingHTTPServer):
    """The HTTP server with its in-memory cluster. ``start()`` serves from a daemon thread;
    ``shutdown()`` stops serving, closes the socket and any idle keep-alive connection."""

    daemon_threads = True

    def __init__(self, host: str = "127.0.0.1", port: int = 0, log_requests: bool = False) -> None:
        super().__init__((host, port), _Handler)
        self.cluster, self.router, self.log_requests = Cluster(), build_router(), log_requests
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def track(self, connection: socket.socket, open_: bool) -> None:
        with self._connections_lock:
            (self._connections.add if open_ else self._connections.discard)(connection)

    def start(self) -> OpenSearchServer:
        self._thread = threading.Thread(target=self.serve_forever, name="opensearch-stand-in", daemon=True)
        self._thread.start()
        return self

    def shutdown(self) -> None:
        if self._thread is not None:
            super().shutdown()
            self._thread.join()
            self._thread = None
        self.server_close()
        with self._connections_lock:
            for connection in self._connections:
                try:
                    connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


def start_server(host: str = "127.0.0.1", port: int = 0, log_requests: bool = False) -> OpenSearchServer:
    """Start a server on a background thread; ``port=0`` picks a free port (see ``.url``)."""
    return OpenSearchServer(host, port, log_requests).start()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="In-memory OpenSearch-compatible server for local use.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9200, help="0 picks a free port")
    parser.add_argument("--log-requests", action="store_true", help="log each request to stderr")
    args = parser.parse_args(argv)
    server = start_server(args.host, args.port, args.log_requests)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    print(f"listening on {server.url}", flush=True)
    while not stop.wait(0.5):
        pass
    server.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
