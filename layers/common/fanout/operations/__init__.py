"""Operator work on a running pipeline: backfill, reconcile, dead letters, status, maintenance."""
