"""local/ministack_launch.py: ministack runs with everything alive frozen out of the collector's walks, again and
again while it runs (a full collection of its whole state paused every AWS API it serves)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from local.config import ROOT

LAUNCH = ROOT / "local" / "ministack_launch.py"

# A stand-in for ministack.app: state made after start must be frozen too, not only what existed at start.
FAKE_APP = """
import gc, time

def main():
    first = None
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        frozen = gc.get_freeze_count()
        if first is None and frozen:
            first = frozen
            state = [{"item": i} for i in range(5000)]  # state made after the first freeze
        elif first is not None and frozen >= first + 5000:
            print("frozen", first, frozen)
            return 0
        time.sleep(0.01)
    print("never frozen", gc.get_freeze_count())
    return 3
"""


def test_ministack_state_is_frozen_out_of_collections_while_it_runs(tmp_path: Path) -> None:
    package = tmp_path / "ministack"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "app.py").write_text(FAKE_APP)
    env = os.environ | {"PYTHONPATH": str(tmp_path), "MINISTACK_GC_FREEZE_SECONDS": "0.05"}
    done = subprocess.run([sys.executable, "-P", str(LAUNCH)], env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("frozen")
