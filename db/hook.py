"""Post-deploy hook: a CloudFormation custom resource that migrates the source database.

On Create and Update it applies ``migrations/`` (shipped beside this file), filling
``${parser_function_arn}`` from the ``ParserFunctionArn`` property; on Delete it leaves the
database alone unless ``RemoveTriggersOnDelete`` is ``"true"``. Every request is answered
exactly once, a timeout included. The logic lives in the layer (fanout.capture.post_deploy).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fanout.capture.post_deploy import LambdaContext, process_event

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any] | None:
    return process_event(event, context, migrations_dir=MIGRATIONS_DIR)
