"""The fetcher's side of composed documents: a change *via* a parent or link-target relation becomes the
root documents it touches, rebuilt page by page.

The roots are found with a plain read in bounded pages (fanout.source.compose.resolve_roots); each page is
applied like any batch of root changes (one composed locking read per chunk, one sink batch). When any root
of a page fails, the via change itself is reported failed, so the queue retries it (and with it every
root: a root already rebuilt is written again as a no-op or found stale).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from fanout.model.change import Change
from fanout.model.mapping import Mappings, TableMapping
from fanout.redaction import describe_error

# The roots of a change via a relation, in pages (an exception ends the pages: the change failed).
ResolveRoots = Callable[[TableMapping, Change], Iterable[list[Change]]]
FailedKeys = set[tuple[str, tuple[tuple[str, object], ...]]]


def split_related(changes: Sequence[Change]) -> tuple[list[Change], list[Change]]:
    """(root changes, changes via a relation)."""
    return [c for c in changes if not c.via], [c for c in changes if c.via]


def apply_related(
    related: Sequence[Change],
    mappings: Mappings,
    resolve_roots: ResolveRoots | None,
    apply_roots: Callable[[list[Change]], None],
    failed_keys: FailedKeys,
    failures: list[str],
) -> None:
    """Resolve each change via a relation to its roots and ``apply_roots`` them, page by page."""
    for change in dict.fromkeys(related):  # equal changes via one relation resolve to the same roots
        mapping = mappings.get(change.table)
        assert mapping is not None, "changes are validated against the mapping"
        where = f"{change.table}/{change.via}/{change.document_id}"
        try:
            if resolve_roots is None:
                raise RuntimeError("this fetcher cannot resolve related changes (no resolver)")
            for page in resolve_roots(mapping, change):
                apply_roots(page)
                failed = [root for root in page if (root.table, root.key) in failed_keys]
                if failed:
                    failures.append(f"{where}: {len(failed)} of its root documents failed")
                    failed_keys.add((change.table, change.key))
        except Exception as exc:  # noqa: BLE001 - the resolution failed: the change is retried
            failures.append(f"{where}: resolving its root documents failed: {describe_error(exc)}")
            failed_keys.add((change.table, change.key))
