"""The composed read: a root row and every row its document is built from, locked, with one version.

(About 430 lines, one module on purpose: the locked composing read, its waiting retry, the unlocked
pages reconcile compares and a parent's roots all build on the same relation joins and filter SQL.)

docs/architecture.md, "Composed documents". For a chunk of root keys, one transaction at REPEATABLE READ
runs one locking read per relation, each joined from the root rows (so matching follows the database's
collations): the root rows, each parent, each child list, each link table with its targets. Every row
read is share-locked and, at REPEATABLE READ, so are the gaps of the scanned index ranges: no child or
link row can be inserted into, or moved out of, a document's ranges until the transaction ends. The
version, ``SYSDATE(6)``, is taken after the last read, while all those locks are held: any change
committed later to any row the document was built from is captured and re-composed under a later clock.

No read waits while holding locks an application transaction could need: every locking read of the
composition is ``FOR SHARE NOWAIT``. On a conflict (error 3572) the transaction is rolled back (releasing
everything), that one statement is run for that one root as a *waiting* locking read in a transaction of its
own (it waits the writer out, bounded by ``innodb_lock_wait_timeout``), committed at once, and the
composition starts again (:data:`MAX_ATTEMPTS`; then a retryable error). The waiting read holds at most the rows of
one relation of one root while it waits, and starts only while its longest wait fits in the time left
(``deadline``, as the plain read's waiting read): a root it cannot start for is a retryable error.

A root that is absent, or present but not passing the mapping's filter, is absent from the sinks (a
delete): absent with the clock read before the locking read, filtered out with the clock under its lock.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import pymysql

from fanout.deadline import NO_DEADLINE, TimeLeft
from fanout.model.change import Change
from fanout.model.composition import (
    Children,
    Composition,
    EmbeddedList,
    EmbeddedRow,
    ManyToMany,
    OverLimit,
    Parent,
    RowFilter,
)
from fanout.model.mapping import TableMapping
from fanout.source.connection import lock_wait_seconds
from fanout.source.rows import (
    CLOCK_SQL,
    RETRYABLE_MYSQL_ERRORS,
    SHARE,
    SHARE_NOWAIT,
    RowState,
    SourceReadError,
    has_exact_key,
    typed_row,
)
from fanout.source.sql import quote_identifier as q

# Roots per composing transaction: bounds the statements' size and the locks one transaction holds.
MAX_ROOTS_PER_READ = 100
# Compositions of one root that may each meet a lock before the change is left to a retry.
MAX_ATTEMPTS = 5
# Roots a parent or link-target change resolves to per page (a plain read, keyset-paged).
ROOTS_PER_PAGE = 500
ER_LOCK_NOWAIT = 3572  # a NOWAIT read met a row a writer holds (a lock-wait timeout stays 1205: retryable)
_KEY = "__fanout_k"  # result columns carrying the root's key
_PASSES = "__fanout_passes"


@dataclass(frozen=True)
class _Statement:
    relation: str  # "" for the root
    sql: str  # without its lock clause
    params: tuple[Any, ...]


class _LockBusy(Exception):
    def __init__(self, statement: _Statement) -> None:
        super().__init__(statement.relation or "root")
        self.statement = statement


def _filter_sql(row_filter: RowFilter | None) -> tuple[str, tuple[Any, ...]]:
    """The filter as a boolean expression on ``r`` (values bound, never inlined)."""
    if row_filter is None:
        return "1", ()
    column = f"r.{q(row_filter.column)}"
    marks = ", ".join(["%s"] * len(row_filter.values))
    sql = {
        "=": f"{column} = %s",
        "!=": f"{column} <> %s",
        "in": f"{column} IN ({marks})",
        "not in": f"{column} NOT IN ({marks})",
        "is null": f"{column} IS NULL",
        "is not null": f"{column} IS NOT NULL",
    }[row_filter.op]
    return f"COALESCE({sql}, 0)", row_filter.values


def _root_keys(mapping: TableMapping, count: int) -> str:
    key = "(" + ", ".join(f"r.{q(c)}" for c in mapping.key_columns) + ")"
    one = "(" + ", ".join(["%s"] * len(mapping.key_columns)) + ")"
    return f"{key} IN ({', '.join([one] * count)})"


def _key_select(mapping: TableMapping) -> str:
    return ", ".join(f"r.{q(c)} AS {_KEY}{i}" for i, c in enumerate(mapping.key_columns))


def root_statement(mapping: TableMapping, keys: Sequence[tuple[Any, ...]]) -> _Statement:
    composition = mapping.composition
    assert composition is not None and mapping.columns is not None
    passes, params = _filter_sql(composition.filter)
    columns = ", ".join(f"r.{q(c)}" for c in mapping.columns)
    sql = (
        f"SELECT {columns}, {passes} AS {_PASSES} FROM {q(mapping.table)} r "  # noqa: S608 - validated names
        f"WHERE {_root_keys(mapping, len(keys))}"
    )
    return _Statement("", sql, (*params, *(v for key in keys for v in key)))


def _order(alias: str, order_by: Sequence[Any], fields: Sequence[str], key: Sequence[str] = ()) -> str:
    """A total order of a relation's rows, so the same rows give the same list whatever the plan: the declared
    order, then every field (both under the collations, as users expect to read them), then the same columns
    by their bytes (values a collation calls equal, such as 'Red' and 'red', or 'e' and 'é', tie before it),
    then the related row's key where the relation names it. Rows equal byte for byte in every field are the
    same entry of the document, whichever comes first."""
    columns = [(o.column, f" {o.direction.upper()}") for o in order_by] + [(f, "") for f in fields]
    terms = [f"{alias}.{q(column)}{direction}" for column, direction in columns]
    terms += [f"CAST({alias}.{q(column)} AS BINARY){direction}" for column, direction in columns]
    terms += [f"{alias}.{q(column)}" for column in key]
    return ", ".join(terms)


def relation_statement(
    mapping: TableMapping, relation: Parent | Children | ManyToMany, keys: Sequence[tuple[Any, ...]]
) -> _Statement:
    """One relation of every root in ``keys``, joined from the root rows (which are locked again: held)."""
    root = f"{q(mapping.table)} r"
    where = _root_keys(mapping, len(keys))
    key_order = ", ".join(f"{_KEY}{i}" for i in range(len(mapping.key_columns)))
    if isinstance(relation, Parent):
        on = " AND ".join(f"p.{q(parent)} = r.{q(own)}" for own, parent in relation.on)
        fields = ", ".join(f"p.{q(f)}" for f in relation.fields)
        sql = f"SELECT {_key_select(mapping)}, {fields} FROM {root} JOIN {q(relation.table)} p ON {on} WHERE {where}"  # noqa: S608,E501
    elif isinstance(relation, Children):
        on = " AND ".join(f"c.{q(child)} = r.{q(own)}" for own, child in relation.on)
        fields = ", ".join(f"c.{q(f)}" for f in relation.fields)
        sql = (
            f"SELECT {_key_select(mapping)}, {fields} FROM {root} JOIN {q(relation.table)} c ON {on} "  # noqa: S608
            f"WHERE {where} ORDER BY {key_order}, {_order('c', relation.order_by, relation.fields)}"
        )
    else:
        through = " AND ".join(f"l.{q(link)} = r.{q(own)}" for own, link in relation.through_on)
        on = " AND ".join(f"t.{q(target)} = l.{q(link)}" for link, target in relation.on)
        fields = ", ".join(f"t.{q(f)}" for f in relation.fields)
        order = _order("t", relation.order_by, relation.fields, relation.referenced)
        sql = (
            f"SELECT {_key_select(mapping)}, {fields} FROM {root} "  # noqa: S608 - validated names
            f"JOIN {q(relation.through)} l ON {through} JOIN {q(relation.table)} t ON {on} "
            f"WHERE {where} ORDER BY {key_order}, {order}"
        )
    return _Statement(relation.name, sql, tuple(v for key in keys for v in key))


def _plain(mapping: TableMapping) -> TableMapping:
    """Related rows are typed without the root's JSON columns (a related column may share a name)."""
    return replace(mapping, json_columns=frozenset())


def _run(cur: Any, statement: _Statement, lock: str, typing: TableMapping) -> list[dict[str, Any]]:
    try:
        cur.execute(f"{statement.sql} {lock}", statement.params)
    except pymysql.err.OperationalError as exc:
        if exc.args and exc.args[0] == ER_LOCK_NOWAIT and lock == SHARE_NOWAIT:
            raise _LockBusy(statement) from exc
        raise
    return [typed_row(cur, raw, typing) for raw in cur.fetchall()]


def _entry_key(row: dict[str, Any], width: int) -> tuple[Any, ...]:
    return tuple(row.pop(f"{_KEY}{i}") for i in range(width))


def _attach(
    composition: Composition,
    rows: dict[tuple[Any, ...], dict[str, Any]],
    relation: Parent | Children | ManyToMany,
    found: list[dict[str, Any]],
    width: int,
) -> None:
    if isinstance(relation, Parent):
        for entry in found:
            key = _entry_key(entry, width)
            if key in rows:
                rows[key][relation.name] = EmbeddedRow(entry)
        return
    lists: dict[tuple[Any, ...], list[Any]] = {}
    for entry in found:
        key = _entry_key(entry, width)
        as_values = isinstance(relation, ManyToMany) and relation.as_values
        value = entry[relation.fields[0]] if as_values else EmbeddedRow(entry)
        lists.setdefault(key, []).append(value)
    for key, row in rows.items():
        items = lists.get(key, [])
        if len(items) > relation.limit and relation.beyond_limit == "reject":
            row[relation.name] = OverLimit(composition.root, relation.name, len(items), relation.limit)
        else:
            row[relation.name] = EmbeddedList(items[: relation.limit])


def _compose(
    conn: pymysql.connections.Connection, mapping: TableMapping, changes: Sequence[Change], lock: str
) -> list[RowState]:
    """One composing transaction for ``changes`` (distinct root keys); _LockBusy on the first conflict."""
    composition = mapping.composition
    assert composition is not None
    width = len(mapping.key_columns)
    with conn.cursor() as cur:
        cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")  # next-key locks: no phantoms
        conn.begin()
        try:
            cur.execute(CLOCK_SQL)
            before = int(cur.fetchone()[0])
            found = _run(cur, root_statement(mapping, [c.key_values for c in changes]), lock, mapping)
            passing: dict[tuple[Any, ...], dict[str, Any]] = {}
            present: dict[tuple[Any, ...], dict[str, Any]] = {}
            for row in found:
                passes = bool(row.pop(_PASSES))
                key = tuple(row[c] for c in mapping.key_columns)
                present[key] = row
                if passes:
                    passing[key] = row
            if passing:
                keys = list(passing)
                for relation in composition.relations:
                    for row in passing.values():  # no parent row: null, no children: []
                        row.setdefault(relation.name, None if isinstance(relation, Parent) else EmbeddedList())
                    rows = _run(cur, relation_statement(mapping, relation, keys), lock, _plain(mapping))
                    _attach(composition, passing, relation, rows, width)
            version = before
            if present:
                cur.execute(CLOCK_SQL)  # every row the documents were built from is still share-locked
                version = int(cur.fetchone()[0])
        finally:
            if conn.open:
                conn.rollback()  # read only: releases every lock
    states: list[RowState] = []
    for change in changes:
        found_row = present.get(change.key_values)
        if found_row is None or not has_exact_key(found_row, change):  # absent, or another key's row (collation)
            states.append(RowState(None, before))
        elif change.key_values not in passing:
            states.append(RowState(None, version))  # present but filtered out: absent from the sinks
        else:
            states.append(RowState(found_row, version))
    return states


def waiting_statements(
    mapping: TableMapping, relation_name: str, key: tuple[Any, ...]
) -> list[tuple[str, tuple[Any, ...], bool]]:
    """What to wait on for one relation of one root, without the root row's lock: ``(sql, params, locking)``
    statements run in order (a parent's key is looked up first with a plain read, which locks nothing)."""
    composition = mapping.composition
    assert composition is not None
    # Each reads the columns the composition reads, so it meets the same index records (a covering index
    # alone would not see a lock on the clustered row).
    root_where = " AND ".join(f"r.{q(c)} = %s" for c in mapping.key_columns)
    if not relation_name:
        columns = ", ".join(f"r.{q(c)}" for c in mapping.columns or ())
        return [(f"SELECT {columns} FROM {q(mapping.table)} r WHERE {root_where}", key, True)]  # noqa: S608
    relation = composition.relation(relation_name)

    def fields(alias: str) -> str:
        return ", ".join(f"{alias}.{q(f)}" for f in relation.fields)

    if isinstance(relation, Parent):
        own = ", ".join(f"r.{q(o)}" for o, _ in relation.on)
        match = " AND ".join(f"p.{q(p)} = %s" for _, p in relation.on)
        return [
            (f"SELECT {own} FROM {q(mapping.table)} r WHERE {root_where}", key, False),  # noqa: S608
            (f"SELECT {fields('p')} FROM {q(relation.table)} p WHERE {match}", (), True),  # noqa: S608
        ]
    if isinstance(relation, Children):
        match = " AND ".join(f"c.{q(child)} = %s" for _, child in relation.on)
        return [(f"SELECT {fields('c')} FROM {q(relation.table)} c WHERE {match}", key, True)]  # noqa: S608
    through = " AND ".join(f"l.{q(link)} = %s" for _, link in relation.through_on)
    on = " AND ".join(f"t.{q(target)} = l.{q(link)}" for link, target in relation.on)
    joined = f"{q(relation.through)} l JOIN {q(relation.table)} t ON {on}"
    sql = f"SELECT {fields('t')} FROM {joined} WHERE {through}"  # noqa: S608 - validated names
    return [(sql, key, True)]


def _wait_out(conn: pymysql.connections.Connection, mapping: TableMapping, relation: str, key: tuple[Any, ...]) -> None:
    """Wait for the lock that stopped one relation of one root: a waiting read of that relation's rows alone
    (not the root's), in a transaction holding nothing else, committed at once."""
    with conn.cursor() as cur:
        conn.begin()
        try:
            found: tuple[Any, ...] = ()
            for sql, params, locking in waiting_statements(mapping, relation, key):
                if not locking:
                    cur.execute(sql, params)
                    row = cur.fetchone()
                    if row is None or any(value is None for value in row):
                        return  # the root or its reference is gone: nothing to wait for
                    found = tuple(row)
                    continue
                cur.execute(f"{sql} {SHARE}", params or found)
                cur.fetchall()
        finally:
            if conn.open:
                conn.commit()


def _retryable(exc: pymysql.err.OperationalError, mapping: TableMapping) -> SourceReadError | None:
    code = exc.args[0] if exc.args else None
    if code in RETRYABLE_MYSQL_ERRORS:
        return SourceReadError(f"{RETRYABLE_MYSQL_ERRORS[code]} composing {mapping.table}; will retry")
    return None


def _compose_one(
    conn: pymysql.connections.Connection, mapping: TableMapping, change: Change, deadline: TimeLeft
) -> RowState:
    for _ in range(MAX_ATTEMPTS):
        try:
            return _compose(conn, mapping, [change], SHARE_NOWAIT)[0]
        except _LockBusy as busy:
            left = deadline.left()
            if left != math.inf and left <= lock_wait_seconds(conn) + 1:
                raise SourceReadError(f"out of time for a waiting read of {mapping.table}; will retry") from None
            try:
                _wait_out(conn, mapping, busy.statement.relation, change.key_values)
            except pymysql.err.OperationalError as exc:
                error = _retryable(exc, mapping)
                if error is None:
                    raise
                raise error from exc
    raise SourceReadError(
        f"{mapping.table} key {change.document_id}: its rows stayed locked through {MAX_ATTEMPTS} compositions; "
        "will retry"
    )


def compose_rows(
    conn: pymysql.connections.Connection,
    mapping: TableMapping,
    changes: Sequence[Change],
    deadline: TimeLeft = NO_DEADLINE,
) -> list[RowState | Exception]:
    """The composed document of every change's root, in order (the row of :class:`RowState` holds the root's
    columns and one field per relation). An item is an exception when that root could not be composed now
    (a writer held it longer than the waits allow, or no wait fitted in ``deadline``)."""
    states: list[RowState | Exception | None] = [None] * len(changes)
    distinct: dict[tuple[Any, ...], list[int]] = {}
    for index, change in enumerate(changes):
        distinct.setdefault(change.key, []).append(index)
    unique = [changes[indices[0]] for indices in distinct.values()]
    for start in range(0, len(unique), MAX_ROOTS_PER_READ):
        chunk = unique[start : start + MAX_ROOTS_PER_READ]
        results: list[RowState | Exception]
        try:
            results = list(_compose(conn, mapping, chunk, SHARE_NOWAIT))
        except _LockBusy:  # some row is held by a writer: each root alone, waiting for its own lock
            results = []
            for change in chunk:
                try:
                    results.append(_compose_one(conn, mapping, change, deadline))
                except SourceReadError as exc:
                    results.append(exc)
        except pymysql.err.OperationalError as exc:
            error = _retryable(exc, mapping)
            if error is None:
                raise
            results = [error] * len(chunk)
        for change, result in zip(chunk, results, strict=True):
            for index in distinct[change.key]:
                states[index] = result
    return [state for state in states if state is not None]


def root_page(
    conn: pymysql.connections.Connection, mapping: TableMapping, change: Change, page_size: int = ROOTS_PER_PAGE
) -> list[Change]:
    """One page of the roots a parent or link-target row (``change.via``, ``change.key``: the referenced
    columns) is part of: at most ``page_size`` root changes in root-key order, after ``change.after`` (empty:
    from the first) — keyset paging, so the next page starts after this page's last root key. A plain read,
    no lock (a root that points elsewhere meanwhile is re-composed by its own change). Roots that do not pass
    the filter are skipped: they are absent from the sinks, and becoming present is their own change."""
    composition = mapping.composition
    assert composition is not None
    relation = _relation(composition, change.via)
    passes, filter_params = _filter_sql(composition.filter)
    key = ", ".join(f"r.{q(c)}" for c in mapping.key_columns)
    marks = ", ".join(["%s"] * len(mapping.key_columns))
    if isinstance(relation, Parent):
        joined = f"{q(mapping.table)} r"
        match = " AND ".join(f"r.{q(own)} = %s" for own, _ in relation.on)
    else:
        through = " AND ".join(f"l.{q(link)} = r.{q(own)}" for own, link in relation.through_on)
        joined = f"{q(mapping.table)} r JOIN {q(relation.through)} l ON {through}"
        match = " AND ".join(f"l.{q(link)} = %s" for link, _ in relation.on)
    sql = f"SELECT DISTINCT {key} FROM {joined} WHERE {match} AND {passes}"  # noqa: S608 - validated names
    params: tuple[Any, ...] = (*(value for _, value in change.key), *filter_params)
    if change.after:
        sql += f" AND ({key}) > ({marks})"
        params += tuple(value for _, value in change.after)
    sql += f" ORDER BY {key} LIMIT {int(page_size)}"
    with conn.cursor() as cur:
        cur.execute(sql, params)
        found = cur.fetchall()
    return [
        Change(mapping.table, tuple(zip(mapping.key_columns, row, strict=True)), "update",
               change.changed_at_us, change.correlation_id)
        for row in found
    ]  # fmt: skip


def _relation(composition: Composition, name: str) -> Parent | ManyToMany:
    relation = composition.relation(name)
    if isinstance(relation, Children):
        raise ValueError(f"{composition.root}.{name} is a child list: its changes name their roots")
    return relation


def composed_page(
    conn: pymysql.connections.Connection, mapping: TableMapping, rows: Sequence[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The composed documents of a page of root rows, read without a lock (one consistent snapshot per
    chunk), for the checks that compare sinks with the source (reconcile, verify): roots that do not pass
    the filter are left out, as they are absent from the sinks."""
    changes = [Change(mapping.table, tuple((c, row[c]) for c in mapping.key_columns), "update", 1) for row in rows]
    composed: list[dict[str, Any]] = []
    for start in range(0, len(changes), MAX_ROOTS_PER_READ):
        for state in _compose(conn, mapping, changes[start : start + MAX_ROOTS_PER_READ], lock=""):
            if state.row is not None:
                composed.append(state.row)
    return composed
