"""Print template.yaml after the SAM transform, as CloudFormation would see it.

cfn-lint no longer applies the SAM transform itself, so errors in what SAM
generates (an invalid EventInvokeConfig, a bad runtime) slip past it; linting
this output catches them. Runs offline: managed-policy names are not resolved.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse

ROOT = Path(__file__).resolve().parent.parent


class OfflinePolicyLoader:
    """No IAM calls: the template uses SAM policy templates, not managed policy names."""

    def load(self) -> dict[str, Any]:
        return {}


def with_placeholder_artifacts(template: dict[str, Any]) -> dict[str, Any]:
    """Local code paths become S3 URIs, as `sam package` would make them."""
    for resource in template.get("Resources", {}).values():
        properties = resource.get("Properties", {})
        for key in ("CodeUri", "ContentUri"):
            value = properties.get(key)
            if isinstance(value, str) and not value.startswith("s3://"):
                properties[key] = f"s3://artifacts-bucket/{value.strip('/')}.zip"
    return template


def main() -> int:
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "template.yaml"
    template = with_placeholder_artifacts(yaml_parse(path.read_text(encoding="utf-8")))
    print(json.dumps(transform(template, {}, OfflinePolicyLoader()), indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
