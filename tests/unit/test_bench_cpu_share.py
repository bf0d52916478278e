"""bench/cpu_share.py: each local-stack process is counted in its own part, and CPU used in the window is seen."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import time
from types import ModuleType
from unittest import mock

import psutil
import pytest

OWN = os.getpid()
# 0.4 s of CPU, then alive and idle until its stdin closes (a process must be alive to be read after the window)
BURN_THEN_WAIT = (
    "import sys, time\nend = time.process_time() + 0.4\nwhile time.process_time() < end: pass\nsys.stdin.read()"
)


@pytest.fixture(scope="module")
def cpu_share() -> ModuleType:
    """bench.cpu_share, imported with the environment put back after: the bench package sets the log level and the
    metrics namespace for the benchmarks when imported, which the other tests must not inherit."""
    with mock.patch.dict(os.environ):
        return importlib.import_module("bench.cpu_share")


def test_each_local_stack_process_is_named_by_its_part(cpu_share: ModuleType) -> None:
    part_of, REST = cpu_share.part_of, cpu_share.REST
    worker = "/work/.local/ministack-tmp/ministack-lambda-fanout-local-{}-7yze8m2y/_worker.py"
    python = "/work/.local/ministack-venv/bin/python3.12"
    assert part_of([python, worker.format("fetcher")], 10, OWN) == "fetcher_fn (workers)"
    assert part_of([python, worker.format("parser")], 11, OWN) == "parser_fn (workers)"
    assert part_of([python, worker.format("MigrationsFunction-9B17F784B0F0B")], 12, OWN) == "other functions (workers)"
    assert part_of([python, "-P", "/work/local/ministack_launch.py"], 13, OWN) == "ministack (AWS APIs)"
    assert part_of([python, "/work/.local/ministack-venv/bin/ministack"], 13, OWN) == "ministack (AWS APIs)"
    assert part_of(["/work/.local/mysql/mysql-8.0.31/bin/mysqld", "--no-defaults"], 14, OWN) == "mysqld"
    assert part_of(["/usr/bin/java", "-Dopensearch.path.home=/x", "org.opensearch.bootstrap.OpenSearch"], 15, OWN) == (
        "opensearch"
    )
    assert part_of(["python", "/work/local/lambda_async/bridge.py", "--port", "4599"], 16, OWN) == "lambda_async bridge"
    assert part_of(["python", "-m", "pytest"], OWN, OWN) == "the benchmark's writers"
    assert part_of(["bash"], 17, OWN) == REST


def test_cpu_burnt_in_the_window_is_counted_and_the_machine_is_seen_busy(cpu_share: ModuleType) -> None:
    measure, snapshot, REST = cpu_share.measure, cpu_share.snapshot, cpu_share.REST
    before = snapshot()
    burner = subprocess.Popen(
        [
            sys.executable,
            "-c",
            BURN_THEN_WAIT,
        ],
        stdin=subprocess.PIPE,
    )
    try:
        time.sleep(0.1)
        while burner.poll() is None and _cpu(burner.pid) < 0.4:  # until it burnt its 0.4 s (it then waits, alive)
            time.sleep(0.05)
        after = snapshot()
    finally:
        burner.communicate(b"")
    share = measure(before, after)
    used = share["cores_used"]
    # the burner (0.4 CPU s) is in the rest of the machine; nothing was counted before the window
    assert used[REST] * share["wall_s"] >= 0.35
    busy = share["machine_busy"]
    assert busy is not None and 0 < busy <= 1


def _cpu(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system
