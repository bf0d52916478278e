"""Shared test setup: the layer package and the repository root are importable."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for path in (ROOT / "layers" / "common", ROOT):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

EVENTS = ROOT / "events"
