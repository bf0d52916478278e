"""Where the machine's CPU goes while a benchmark runs: CPU seconds per part of the local stack (psutil).

Through the deployed local stack every part shares one small machine: the functions' workers (ministack runs
each function in a Python process of its own), ministack itself (every AWS API), MySQL, OpenSearch, the
lambda_async bridge, the benchmark's own writers, and whatever else the machine runs. A latency read at a given
rate means little without knowing whether the machine was full, and by whom: :func:`measure` says both.

    before = snapshot()
    ...                                  # the measured window
    share = measure(before, snapshot())  # CpuShare: wall_s, cores, machine_busy, cores_used {part: cores}
    print(table(share, changes))
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from typing import TypedDict

import psutil

# ministack's Lambda workers run <tmp>/ministack-lambda-<function name>-<random>/_worker.py
_WORKER = re.compile(r"ministack-lambda-(?P<function>.+)-[a-z0-9_]{8}/_worker\.py")
_FUNCTIONS = ("fetcher", "parser", "sweeper", "maintenance")
REST = "rest of the machine"


def part_of(cmdline: list[str], pid: int, own_pid: int) -> str:
    """The part of the local stack a process belongs to, from its command line."""
    if pid == own_pid:
        return "the benchmark's writers"
    line = " ".join(cmdline)
    worker = _WORKER.search(line)
    if worker:
        name = worker.group("function").lower()
        return next((f"{f}_fn (workers)" for f in _FUNCTIONS if f in name), "other functions (workers)")
    if "ministack_launch.py" in line or line.endswith("/bin/ministack"):
        return "ministack (AWS APIs)"
    if "mysqld" in line:
        return "mysqld"
    if "java" in line and "opensearch" in line:
        return "opensearch"
    if "lambda_async" in line and "bridge" in line:
        return "lambda_async bridge"
    return REST


class CpuShare(TypedDict):
    """What :func:`measure` found (a results file's JSON keeps it as it is)."""

    wall_s: float
    cores: int | None  # the machine's logical CPUs
    machine_busy: float | None  # busy share of all of them, 0..1
    cores_used: dict[str, float]  # part -> CPU seconds ÷ wall seconds, the largest first


@dataclass(frozen=True)
class Snapshot:
    at: float
    per_process: dict[int, tuple[str, float]]  # pid -> (part, CPU seconds so far)
    machine_busy_s: float
    machine_total_s: float


def snapshot() -> Snapshot:
    """Every process's CPU time so far and the machine's busy and total CPU time."""
    own = os.getpid()
    processes: dict[int, tuple[str, float]] = {}
    for proc in psutil.process_iter(["pid", "cmdline", "cpu_times"]):
        times = proc.info["cpu_times"]
        if times is None:  # gone, or not ours to read
            continue
        processes[proc.info["pid"]] = (
            part_of(proc.info["cmdline"] or [], proc.info["pid"], own),
            times.user + times.system,
        )
    machine = psutil.cpu_times()._asdict()
    idle = machine["idle"] + machine.get("iowait", 0.0)
    total = sum(value for name, value in machine.items() if name not in ("guest", "guest_nice"))  # in user, nice
    return Snapshot(time.monotonic(), processes, total - idle, total)


def measure(before: Snapshot, after: Snapshot) -> CpuShare:
    """CPU used between two snapshots: cores per part (CPU seconds ÷ wall seconds) and the machine's busy share.

    A process that started in the window counts from zero; one that ended in it is not seen after and counts
    nothing (the functions' workers are kept warm, so the parts that matter live through the window).
    """
    wall = after.at - before.at
    used: dict[str, float] = {}
    for pid, (part, cpu) in after.per_process.items():
        earlier = before.per_process.get(pid)
        start = earlier[1] if earlier and earlier[0] == part else 0.0
        used[part] = used.get(part, 0.0) + max(0.0, cpu - start)
    total = after.machine_total_s - before.machine_total_s
    return CpuShare(
        wall_s=round(wall, 1),
        cores=psutil.cpu_count(),
        machine_busy=round((after.machine_busy_s - before.machine_busy_s) / total, 3) if total > 0 else None,
        cores_used={part: round(cpu / wall, 2) for part, cpu in sorted(used.items(), key=lambda kv: -kv[1])},
    )


def table(share: CpuShare, changes: int) -> str:
    """The share as a markdown table: cores used and CPU ms per 1,000 changes, per part."""
    wall = share["wall_s"]
    busy = "unknown" if share["machine_busy"] is None else f"{share['machine_busy']:.0%}"
    rows = "".join(
        f"| {part} | {cores:.2f} | {cores * wall * 1000 * 1000 / max(1, changes):.0f} |\n"
        for part, cores in share["cores_used"].items()
        if cores >= 0.01
    )
    return (
        f"Machine busy: {busy} of {share['cores']} cores over {wall:g} s.\n\n"
        "| part | cores used | CPU ms per 1,000 changes |\n|---|---|---|\n" + rows
    )
