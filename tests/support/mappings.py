"""Copies of a table's mapping pointed at other sink resources, so a test or benchmark writes where it cleans up."""

from __future__ import annotations

from dataclasses import replace

from fanout.model.mapping import TableMapping


def in_index(mapping: TableMapping, index: str) -> TableMapping:
    """``mapping`` writing its OpenSearch documents to ``index``."""
    return replace(mapping, opensearch=replace(mapping.opensearch, index=index))


def in_dynamodb_table(mapping: TableMapping, table: str) -> TableMapping:
    """``mapping`` writing its DynamoDB items to ``table``."""
    return replace(mapping, dynamodb=replace(mapping.dynamodb, table=table))
