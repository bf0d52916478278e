"""Cold start of this tree against another commit, side by side in one run: each handler's ``import app`` and the
first load of the table mapping (jsonschema's import, the schema check, the typed mapping), each in a fresh
interpreter, and a mapping's parse once warm.

The other commit (default: the main branch this work started from) is exported with ``git archive`` into a
temporary directory; both trees run on this virtualenv's libraries, interleaved run by run so that the load of a
shared machine falls on both. Figures are medians of ``--runs``; what to quote is the ratio.

    python -m bench.bench_cold_import [--against 7d58aa2] [--runs 9]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.harness import ROOT, write_results

HANDLERS = ("parser_fn", "fetcher_fn")
IMPORT_APP = (
    "import sys, time; sys.path.insert(0, {handler!r}); t = time.perf_counter(); import app; "
    "print((time.perf_counter() - t) * 1000)"
)
FIRST_LOAD = (
    "import time; from fanout.model.mapping import load_mappings; t = time.perf_counter(); load_mappings(); "
    "print((time.perf_counter() - t) * 1000)"
)
WARM_PARSES = 30
WARM_PARSE = (
    "import json, statistics, time; from fanout.model.mapping import DEFAULT_MAPPING_FILE, parse_mappings; "
    "document = json.loads(DEFAULT_MAPPING_FILE.read_text()); parse_mappings(document); runs = []\n"
    f"for _ in range({WARM_PARSES}):\n"
    "    t = time.perf_counter(); parse_mappings(document); runs.append((time.perf_counter() - t) * 1000)\n"
    "print(statistics.median(runs))"
)

# This tree only: one warm validation of the bundled mapping by the schema as written (with its "$ref"s) and as
# the loader holds it (inlined), interleaved in one interpreter.
SCHEMA_CHECKS = (
    "import json, statistics, time; from jsonschema.validators import Draft202012Validator; "
    "from fanout.model.mapping import DEFAULT_MAPPING_FILE; from fanout.model.mapping_schema import SCHEMA, inlined; "
    "document = json.loads(DEFAULT_MAPPING_FILE.read_text()); "
    "both = {'references': Draft202012Validator(SCHEMA), 'inlined': Draft202012Validator(inlined(SCHEMA))}; "
    "runs = {name: [] for name in both}\n"
    f"for _ in range({WARM_PARSES}):\n"
    "    for name, validator in both.items():\n"
    "        t = time.perf_counter(); list(validator.iter_errors(document)); "
    "runs[name].append((time.perf_counter() - t) * 1000)\n"
    "print(json.dumps({name: statistics.median(r) for name, r in runs.items()}))"
)


def schema_checks(tree: Path) -> dict[str, float]:
    """{"references": ms, "inlined": ms}: one warm schema check of the bundled mapping each way (median)."""
    env = {**os.environ, "PYTHONPATH": str(tree / "layers" / "common")}
    done = subprocess.run([sys.executable, "-c", SCHEMA_CHECKS], env=env, capture_output=True, text=True, check=True)
    return {name: round(ms, 2) for name, ms in json.loads(done.stdout).items()}


def run_ms(tree: Path, code: str) -> float:
    """Milliseconds one fresh interpreter reports for ``code`` with ``tree``'s layer first on its path."""
    env = {**os.environ, "PYTHONPATH": str(tree / "layers" / "common")}
    env.pop("FANOUT_MAPPING_FILE", None)  # each tree loads its own bundled mapping
    done = subprocess.run([sys.executable, "-c", code], env=env, cwd=tree, capture_output=True, text=True, check=True)
    return float(done.stdout.strip().splitlines()[-1])


def measure(trees: dict[str, Path], runs: int) -> dict[str, dict[str, float]]:
    """{measure: {tree: median ms}}, every run of every measure taken for both trees (in turn first) before the
    next."""
    codes = {f"import {h}": IMPORT_APP for h in HANDLERS} | {"first mapping load": FIRST_LOAD}
    codes["mapping parse, warm"] = WARM_PARSE
    samples: dict[str, dict[str, list[float]]] = {name: {tree: [] for tree in trees} for name in codes}
    for run in range(runs):
        for name, code in codes.items():
            order = list(trees.items())
            for label, tree in order if run % 2 else reversed(order):  # neither tree always warms the other's cache
                handler = name.removeprefix("import ")
                samples[name][label].append(run_ms(tree, code.format(handler=str(tree / handler))))
    return {name: {label: round(statistics.median(v), 1) for label, v in by.items()} for name, by in samples.items()}


def markdown(result: dict[str, Any]) -> str:
    this, other = "this tree", result["against"]
    lines = [
        "# Cold import and mapping load",
        "",
        f"`python -m bench.bench_cold_import --against {other} --runs {result['runs']}`: a fresh interpreter per "
        f"figure, median of {result['runs']}, both trees interleaved in one run on this machine's virtualenv.",
        "",
        f"| | {other} ms | this tree ms | this tree / {other} |",
        "|---|---|---|---|",
    ]
    for name, by in result["medians"].items():
        lines.append(f"| {name} | {by[other]} | {by[this]} | {by[this] / by[other]:.2f} |")
    checks = result["schema_check_ms"]
    lines += [
        "",
        f"One warm schema check of the bundled mapping in this tree (median of {WARM_PARSES}): "
        f"{checks['references']} ms with the schema's `$ref`s, {checks['inlined']} ms with them inlined as the "
        f"loader holds it ({checks['references'] / checks['inlined']:.1f}x).",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", default="7d58aa2", help="the commit to compare with (default: %(default)s)")
    parser.add_argument("--runs", type=int, default=9)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="fanout-cold-import-") as other:
        archive = subprocess.run(["git", "archive", args.against], cwd=ROOT, capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", other], input=archive, check=True)
        medians = measure({"this tree": ROOT, args.against: Path(other)}, args.runs)
    result = {"against": args.against, "runs": args.runs, "medians": medians, "schema_check_ms": schema_checks(ROOT)}
    write_results("cold_import", result, markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
