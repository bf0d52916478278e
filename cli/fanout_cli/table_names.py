"""The tables a backfill or a reconcile is asked for, checked against the mapping before anything connects.

A name that is not a root of the mapping is one clean line (a configuration error, exit status 2), never a
traceback; a table that feeds composed documents (a parent, child, link or target) has no documents of its
own, so the line names the documents it feeds and the command to run on them instead.
"""

from __future__ import annotations

from collections.abc import Iterable

from fanout.config import ConfigError
from fanout.model.composition_payload import feeds_of
from fanout.model.mapping import Mappings


def check_root_tables(names: Iterable[str], mappings: Mappings, command: str) -> None:
    """Raise :class:`ConfigError` for the first of ``names`` that is not a mapped table; ``command`` is the
    ``fanout`` subcommand to suggest for a feeding table (``backfill``, ``reconcile``)."""
    for name in names:
        if name in mappings.tables:
            continue
        feeds = feeds_of(mappings, name)
        if feeds:
            roots = sorted({mapping.table for mapping, _ in feeds})
            described = ", ".join(f"{mapping.table}.{feed.relation} ({feed.kind})" for mapping, feed in feeds)
            raise ConfigError(
                f"{name!r} has no documents of its own: it feeds {described}; its rows are part of those "
                f"documents, so run `fanout {command} {' '.join(roots)}` instead"
            )
        raise ConfigError(f"{name!r} is not a mapped table (mapped: {', '.join(sorted(mappings.tables))})")
