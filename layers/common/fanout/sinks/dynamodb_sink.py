"""DynamoDB sink: one item per row, version-gated by a conditional write (DESIGN.md §2.3).

An item is written only if it is new or its stored ``_version`` is not higher
(``attribute_not_exists(pk) OR _version <= :v``), so late or duplicated changes
lose to newer ones and retries are idempotent. A delete writes a tombstone
item (``_deleted = true``) with a TTL instead of deleting, so a stale upsert
arriving afterwards finds a higher version and cannot resurrect the row.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from ..change import Change
from ..documents import dynamodb_item, dynamodb_tombstone
from ..mapping import TableMapping
from ..source_reader import RowState
from . import Outcome, SinkError

CONDITION = "attribute_not_exists(pk) OR #version <= :version"
MAX_ITEM_BYTES = 400 * 1024


class DynamoDBSink:
    name = "dynamodb"

    def __init__(
        self,
        table: Any,
        tombstone_ttl_seconds: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._table = table  # a boto3 DynamoDB Table resource
        self._tombstone_ttl = tombstone_ttl_seconds
        self._clock = clock

    def enabled_for(self, mapping: TableMapping) -> bool:
        return mapping.dynamodb_enabled

    def apply(self, mapping: TableMapping, change: Change, state: RowState) -> Outcome:
        from botocore.exceptions import BotoCoreError, ClientError

        if state.row is None:
            expires_at = int(self._clock()) + self._tombstone_ttl
            item = dynamodb_tombstone(mapping, change, state.version, expires_at)
            done = Outcome.DELETED
        else:
            item = dynamodb_item(mapping, change, state.row, state.version)
            done = Outcome.WRITTEN
        try:
            self._table.put_item(
                Item=item,
                ConditionExpression=CONDITION,
                ExpressionAttributeNames={"#version": "_version"},
                ExpressionAttributeValues={":version": item["_version"]},
            )
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code == "ConditionalCheckFailedException":
                return Outcome.STALE
            raise SinkError(f"DynamoDB rejected {item['pk']}: {code}: {exc}") from exc
        except BotoCoreError as exc:
            raise SinkError(f"DynamoDB unavailable for {item['pk']}: {exc}") from exc
        return done
