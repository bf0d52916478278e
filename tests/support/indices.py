"""Removing a test's OpenSearch index: the generations behind its alias (fanout.sinks.generations), or the
concrete index a test created itself. OpenSearch refuses to delete an index by an alias's name."""

from __future__ import annotations

from typing import Any


def delete_index(client: Any, name: str) -> None:
    """Delete ``name`` and every generation ``name.g<n>`` (with them the alias and the write set)."""
    client.indices.delete(index=f"{name}.g*", ignore_unavailable=True)
    client.indices.delete(index=name, ignore_unavailable=True)
