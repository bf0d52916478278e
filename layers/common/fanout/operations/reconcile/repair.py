"""Repair: drifted keys handed to the live fetch path, and what each repair cleared, counted per sink."""

from __future__ import annotations

import logging
from typing import Any

from fanout.model.mapping import TableMapping
from fanout.observability import log
from fanout.operations.reconcile.report import REFUSED, ReconcileReport
from fanout.pipeline.fetcher import Fetcher, FetchFailed
from fanout.sinks import Outcome
from fanout.source.keyset import Key, key_change, key_changes


class Repairer:
    """Hands drifted keys to the fetch path and counts, per sink, what it cleared."""

    def __init__(self, fetcher: Fetcher, report: ReconcileReport) -> None:
        self.fetcher, self.report = fetcher, report
        # A row a sink refuses now was refused (and recorded) when the fetcher met it: reconcile reports it on
        # every run instead of adding a dead letter each time, so repairs go through the same fetcher with a
        # recorder that only notes the refusal (see repair).
        self.refusals: dict[tuple[str, str], str] = {}
        self.repairing: TableMapping | None = None
        self.quiet = fetcher.with_reject(self.refused)

    def refused(self, reason: str, payload: Any, correlation_id: str) -> None:
        mapping = self.repairing
        assert mapping is not None
        sink, _, detail = reason.partition(": ")
        for message in payload.get("changes", []) if isinstance(payload, dict) else []:
            key = tuple(message.get("pk", {}).get(c) for c in mapping.key_columns)
            self.refusals[(key_change(mapping, key).document_id, sink)] = detail

    def repair(self, mapping: TableMapping, drifted: dict[Key, set[str]]) -> None:
        if not drifted:
            return
        changes, _ = key_changes(mapping, self.fetcher.mappings, list(drifted), "reconcile-repair", self.fetcher.reject)
        outcomes: dict[tuple[str, str], str] = {}
        self.refusals, self.repairing = {}, mapping
        refusals = self.refusals
        try:
            fetched = self.quiet.apply(changes)
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
