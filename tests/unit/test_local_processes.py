"""local/processes.py: a service stopping is given its time to finish what SIGTERM starts (ministack writes its
whole state then), and one that overruns it is killed and named."""

from __future__ import annotations

import os
import sys
import time
import uuid
from pathlib import Path

import pytest

from local.processes import running_pid, start_process, stop_process

# Like ministack: on SIGTERM it spends a while saving, then exits.
SAVES_ON_SIGTERM = """
import signal, sys, time
from pathlib import Path
ready, saved = Path(sys.argv[1]), Path(sys.argv[2])
def save(*_):
    time.sleep(1.0)
    saved.write_text("saved")
    sys.exit(0)
signal.signal(signal.SIGTERM, save)
ready.write_text("ready")
while True:
    time.sleep(0.1)
"""


def _started(tmp_path: Path) -> tuple[str, Path]:
    name = f"test-stop-{uuid.uuid4().hex[:8]}"
    ready, saved = tmp_path / "ready", tmp_path / "saved"
    start_process(name, [sys.executable, "-c", SAVES_ON_SIGTERM, str(ready), str(saved)], dict(os.environ))
    deadline = time.monotonic() + 10
    while not ready.exists():
        assert time.monotonic() < deadline, "the stand-in never became ready"
        time.sleep(0.05)
    return name, saved


def test_a_service_is_given_its_time_to_save_before_it_stops(tmp_path: Path) -> None:
    name, saved = _started(tmp_path)
    assert stop_process(name, timeout=10)
    assert saved.read_text() == "saved"
    assert running_pid(name) is None


def test_a_service_that_overruns_its_time_is_killed_and_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    name, saved = _started(tmp_path)
    assert stop_process(name, timeout=0.3)
    assert not saved.exists()
    assert f"{name} did not stop within 0.3 s of SIGTERM; killed" in capsys.readouterr().out
