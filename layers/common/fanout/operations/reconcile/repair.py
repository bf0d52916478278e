"""Repair: drifted keys handed to the live fetch path, and what each repair cleared, counted per sink."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fanout.model.mapping import Mappings, TableMapping
from fanout.observability import log
from fanout.operations.reconcile.report import REFUSED, ReconcileReport
from fanout.pipeline.fetcher import FetchFailed, ReadRow, apply_changes
from fanout.pipeline.rejects import Reject
from fanout.sinks import Outcome, Sink
from fanout.source.keyset import Key, key_change, key_changes


class Repairer:
    """Hands drifted keys to the fetch path and counts, per sink, what it cleared."""

    def __init__(
        self,
        mappings: Mappings,
        read_row: ReadRow,
        sinks: Sequence[Sink],
        reject: Reject | None,
        report: ReconcileReport,
    ) -> None:
        self.mappings, self.read_row, self.sinks, self.reject, self.report = mappings, read_row, sinks, reject, report

    def repair(self, mapping: TableMapping, drifted: dict[Key, set[str]]) -> None:
        if not drifted:
            return
        changes, _ = key_changes(mapping, self.mappings, list(drifted), "reconcile-repair", self.reject)
        outcomes: dict[tuple[str, str], str] = {}
        refusals: dict[tuple[str, str], str] = {}

        def refused(reason: str, payload: Any, correlation_id: str) -> None:
            # A row a sink refuses now was refused (and recorded) when the fetcher met it: reconcile reports
            # it on every run instead of adding a dead letter each time.
            sink, _, detail = reason.partition(": ")
            for message in payload.get("changes", []) if isinstance(payload, dict) else []:
                key = tuple(message.get("pk", {}).get(c) for c in mapping.key_columns)
                refusals[(key_change(mapping, key).document_id, sink)] = detail

        try:
            fetched = apply_changes(changes, self.mappings, self.read_row, self.sinks, refused)
            for o in fetched.outcomes:
                outcomes[(str(o["key"]), str(o["sink"]))] = str(o["outcome"])
        except FetchFailed as exc:
            log(logging.ERROR, "reconcile repair failed", table=mapping.table, error=str(exc))
        for key, sinks in drifted.items():
            document_id = key_change(mapping, key).document_id
            for sink in sinks:
                tally = self.report.tally(mapping.table, sink)
                cleared = outcomes.get((document_id, sink)) in (Outcome.WRITTEN.value, Outcome.DELETED.value)
                if (document_id, sink) in refusals:
                    tally.add(REFUSED, list(key), f"refused when repaired: {refusals[(document_id, sink)]}")
                elif cleared:
                    tally.repaired += 1
                else:
                    tally.unrepaired += 1
