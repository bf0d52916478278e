"""The source database as the fetcher reads it: the locking re-read of a batch of keys, and the pages of roots a
change via a composed document's relation touches.

:class:`RowSource` is what :class:`fanout.pipeline.fetcher.Fetcher` takes (tests pass an in-memory one);
:class:`DatabaseSource` is the one over MySQL. A single read is a batch of one, and whether a table's rows are
read plainly or composed from several tables is decided in one place, :func:`fanout.source.reader.read_rows`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

import pymysql

from fanout.model.change import Change
from fanout.model.mapping import TableMapping
from fanout.source.composition_read import root_page
from fanout.source.reader import read_rows
from fanout.source.rows import RowState

T = TypeVar("T")


class RowSource(Protocol):
    def read_rows(self, mapping: TableMapping, changes: Sequence[Change]) -> Sequence[RowState | Exception]:
        """The committed state of every change's row, in order; an item is an exception when that key could not
        be read now (retryable)."""
        ...

    def root_page(self, mapping: TableMapping, change: Change, page_size: int) -> list[Change]:
        """At most ``page_size`` root changes a change via a relation touches, in root-key order after
        ``change.after``."""
        ...


class Connections(Protocol):
    """Runs a piece of work on a live connection (fanout.source.connection.ConnectionHolder)."""

    def call(self, work: Callable[[pymysql.connections.Connection], T]) -> T: ...

    def close(self) -> None: ...


class OneConnection:
    """One connection the caller owns and closes (tests, benchmarks, tools)."""

    def __init__(self, conn: Any) -> None:
        self._conn = conn

    def call(self, work: Callable[[Any], T]) -> T:
        return work(self._conn)

    def close(self) -> None:
        """The caller closes its connection."""


class DatabaseSource:
    """The source database through ``connections``: a ConnectionHolder replaces a connection found dead (restart,
    failover, KILL) and repeats the read once, which is idempotent."""

    def __init__(self, connections: Connections) -> None:
        self._connections = connections

    @classmethod
    def over(cls, conn: Any) -> DatabaseSource:
        """Reads on ``conn``, which the caller keeps and closes."""
        return cls(OneConnection(conn))

    def read_rows(self, mapping: TableMapping, changes: Sequence[Change]) -> list[RowState | Exception]:
        return self._connections.call(lambda conn: read_rows(conn, mapping, changes))

    def close(self) -> None:
        self._connections.close()

    def root_page(self, mapping: TableMapping, change: Change, page_size: int) -> list[Change]:
        # a plain read, no lock: the roots are then read like any root change
        return self._connections.call(lambda conn: root_page(conn, mapping, change, page_size))
