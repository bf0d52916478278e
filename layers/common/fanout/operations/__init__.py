"""Operator work on a running pipeline: backfill, reconcile, verify, maintenance (the CLI itself is in cli/)."""
