"""Cold start of this tree against another commit, side by side in one run, as Lambda starts each function.

Each tree is built with its own template by ``sam build`` (its layer as that commit deploys it), and each figure
is a fresh interpreter importing the built handler over the built layer only (``python -S``: no virtualenv) and
writing no bytecode, as on Lambda's read-only ``/opt``:

- ``import parser_fn`` / ``import fetcher_fn``: the handler module's import (Lambda's init);
- ``fetcher_fn to its fetch path``: the import and the fetch path built (the first invocation's ``_fetcher()``:
  settings, the mapping checked, the clients), everything of a cold start before the first batch's I/O;
- ``fetcher_fn to its fetch path, with a secret``: the same, plus what the deployed stack's fetch path builds to
  read its database secret (``DB_SECRET_ARN``, which the template always sets), the read itself left out (it is
  I/O): Powertools' Secrets Manager provider and its client, as each tree builds them;
- ``parser_fn to its dependencies``: the parser's likewise (the first invocation's ``_dependencies()``: settings,
  the mapping checked, the queue, dead-letter and Lambda clients);
- ``first mapping load`` and ``mapping parse, warm`` (on this virtualenv, the tree's layer source first).

The environment is the one Lambda gives the template's functions: the settings the fetcher is deployed with
(``OPENSEARCH_AUTH`` sigv4, its default; an event bus) and what Lambda sets itself, the role's credentials and,
``Tracing: Active`` being the template's setting, the X-Ray daemon's address: the functions then build their
Tracer (the X-Ray SDK) at import, as they do in Lambda.

Then where this tree's import goes (``python -X importtime``, the same interpreter and environment, median of
``--runs``): per top-level package, its own modules' time (``self``: these add up to the import) and the time
from its first import to its return, what it pulled in included (``cumulative``: nested, so these overlap).

Both trees are interleaved run by run so that the load of a shared machine falls on both. Figures are the
interpreter's CPU milliseconds (``time.process_time``: the wall time of an idle machine, far less inflated by other
processes than the wall time of a shared one), medians of ``--runs``; what to quote is the ratio.

    python -m bench.bench_cold_import [--against 7d58aa2] [--runs 9]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.harness import ROOT, write_results

HANDLERS = ("parser_fn", "fetcher_fn")
# The interpreter's CPU time (an import reads files already in the page cache: CPU-bound, single-threaded). On an
# idle machine it equals the wall time (153.1 ms wall, 151.2 ms CPU for the parser's import), and other processes
# on a shared machine inflate it far less: at a load of 6 on 2 cores the fetcher's import read 417 ms wall and
# 257 ms CPU, where an idle machine gives ~255 of both.
IMPORT_APP = "import time; t = time.process_time(); import app; print((time.process_time() - t) * 1000)"
FETCH_PATH = "import time; t = time.process_time(); import app; app._fetcher(); print((time.process_time() - t) * 1000)"
# The deployed stack's fetch path reads the database secret when it is built: what that builds before the request
# (the provider this tree's fanout.config reads through; before it, Powertools' default provider).
SECRET_PROVIDER = (
    "\ntry:\n    from fanout.config import secrets_provider\nexcept ImportError:\n"
    "    from aws_lambda_powertools.utilities.parameters import SecretsProvider as secrets_provider\n"
    "secrets_provider()"
)
FETCH_PATH_SECRET = (
    "import time; t = time.process_time(); import app; app._fetcher()" + SECRET_PROVIDER + "\n"
    "print((time.process_time() - t) * 1000)"
)
PARSER_DEPENDENCIES = (
    "import time; t = time.process_time(); import app; app._dependencies(); print((time.process_time() - t) * 1000)"
)
# What the fetch path reads at cold start (it connects to nothing until the first batch): a stack's settings.
LAMBDA_ENV = {
    "AWS_DEFAULT_REGION": "eu-west-1",
    "DB_HOST": "db.internal",
    "DB_NAME": "fanout",
    "DB_USER": "fetcher",
    "DB_PASSWORD": "unused",
    "DB_TLS": "off",
    "OPENSEARCH_ENDPOINT": "https://search.internal",
    "DYNAMODB_TABLE": "fanout-replica",
    "DEAD_LETTER_QUEUE_URL": "https://sqs.eu-west-1.amazonaws.com/123456789012/dlq",
    "FETCH_QUEUE_URL": "https://sqs.eu-west-1.amazonaws.com/123456789012/fetch",
    "EVENT_BUS_NAME": "fanout-events",
    "OPENSEARCH_AUTH": "sigv4",  # the template's default (Amazon OpenSearch Service)
}
# What Lambda itself sets: the function's name, its role's credentials and, with Tracing: Active, the X-Ray
# daemon's address (fanout.observability builds the Tracer when it sees both); LAMBDA_TASK_ROOT is the handler's
# directory (lambda_ms), which the X-Ray SDK reads to know it runs in Lambda.
LAMBDA_RUNTIME_ENV = {
    "AWS_REGION": "eu-west-1",
    "AWS_LAMBDA_FUNCTION_NAME": "fanout-bench",
    "AWS_XRAY_DAEMON_ADDRESS": "169.254.79.129:2000",
    "AWS_ACCESS_KEY_ID": "ASIABENCHMARK",
    "AWS_SECRET_ACCESS_KEY": "unused",
    "AWS_SESSION_TOKEN": "unused",
}
BREAKDOWN_ROWS = 14  # packages listed per function, by their own time
FUNCTIONS = {"parser_fn": "ParserFunction", "fetcher_fn": "FetcherFunction"}
FIRST_LOAD = (
    "import time; from fanout.model.mapping import load_mappings; t = time.process_time(); load_mappings(); "
    "print((time.process_time() - t) * 1000)"
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


def built(tree: Path, into: Path) -> Path:
    """``tree`` built by ``sam build`` with its own template into ``into`` (what that commit deploys)."""
    subprocess.run(
        ["sam", "build", "--template-file", str(tree / "template.yaml"), "--build-dir", str(into)],
        cwd=tree,
        env={**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "SAM_CLI_TELEMETRY": "0"},
        capture_output=True,
        check=True,
    )
    return into


def lambda_ms(build: Path, function: str, code: str) -> float:
    """Milliseconds a fresh interpreter reports for ``code`` run as Lambda runs ``function``: its handler directory
    and the built layer on the path and nothing else, no bytecode written (``/opt`` is read-only)."""
    done = subprocess.run(
        [sys.executable, "-S", "-c", code], env=lambda_env(build, function), capture_output=True, text=True, check=True
    )
    return float(done.stdout.strip().splitlines()[-1])


def lambda_env(build: Path, function: str) -> dict[str, str]:
    """The environment of ``function`` as Lambda runs it: its handler directory and the built layer on the path and
    nothing else, no bytecode written (``/opt`` is read-only), the stack's settings and what Lambda sets."""
    path = f"{build / function}:{build / 'CommonLayer' / 'python'}"
    return {
        "PATH": os.environ["PATH"],
        "PYTHONPATH": path,
        "PYTHONDONTWRITEBYTECODE": "1",
        "LAMBDA_TASK_ROOT": str(build / function),
        **LAMBDA_ENV,
        **LAMBDA_RUNTIME_ENV,
    }


def import_times(stderr: str) -> list[tuple[float, float, str, int | None]]:
    """``python -X importtime`` lines as (self ms, cumulative ms, module, the index of the line of the module that
    imported it)."""
    rows: list[tuple[float, float, int, str]] = []
    for line in stderr.splitlines():
        found = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)", line)
        if found:
            rows.append((int(found[1]) / 1000, int(found[2]) / 1000, len(found[3]), found[4]))
    # Each module is printed after the modules it imported, one level deeper: its importer is the next line up.
    importers: list[int | None] = [None] * len(rows)
    open_levels: list[int] = []
    for index in range(len(rows) - 1, -1, -1):
        while open_levels and rows[open_levels[-1]][2] >= rows[index][2]:
            open_levels.pop()
        importers[index] = open_levels[-1] if open_levels else None
        open_levels.append(index)
    return [(own, cumulative, module, importers[i]) for i, (own, cumulative, _, module) in enumerate(rows)]


def breakdown(build: Path, function: str, runs: int) -> dict[str, Any]:
    """Per top-level package of ``function``'s import: median self and cumulative ms over ``runs``, and the module
    that first imported it; the BREAKDOWN_ROWS packages with the most time of their own, the rest summed."""
    samples: dict[str, dict[str, Any]] = {}
    for _ in range(runs):
        done = subprocess.run(
            [sys.executable, "-S", "-X", "importtime", "-c", "import app"],
            env=lambda_env(build, function),
            capture_output=True,
            text=True,
            check=True,
        )
        lines = import_times(done.stderr)
        totals: dict[str, list[float]] = {}
        for own, cumulative, module, importer in lines:
            package = module.split(".")[0]
            entry = totals.setdefault(package, [0.0, 0.0])
            entry[0] += own
            outer = importer
            while outer is not None and lines[outer][2].split(".")[0] != package:
                outer = lines[outer][3]
            if outer is None:  # no importer of the same package around it: its whole time is the package's
                entry[1] += cumulative
                first_by = lines[importer][2] if importer is not None else "-"
                samples.setdefault(package, {"by": first_by, "self": [], "cumulative": []})
        for package, (own, cumulative) in totals.items():
            samples[package]["self"].append(own)
            samples[package]["cumulative"].append(cumulative)
    rows = [
        {
            "package": package,
            "self_ms": round(statistics.median(entry["self"]), 1),
            "cumulative_ms": round(statistics.median(entry["cumulative"]), 1),
            "first_imported_by": entry["by"],
        }
        for package, entry in samples.items()
    ]
    rows.sort(key=lambda row: -row["self_ms"])
    rest = rows[BREAKDOWN_ROWS:]
    return {
        "self_ms_in_all": round(sum(row["self_ms"] for row in rows), 1),
        "packages": rows[:BREAKDOWN_ROWS],
        "others": len(rest),
        "others_self_ms": round(sum(row["self_ms"] for row in rest), 1),
    }


def measure(trees: dict[str, Path], builds: dict[str, Path], runs: int) -> dict[str, dict[str, float]]:
    """{measure: {tree: median ms}}, every run of every measure taken for both trees (in turn first) before the
    next."""
    built_codes = {f"import {h}": (FUNCTIONS[h], IMPORT_APP) for h in HANDLERS}
    built_codes["fetcher_fn to its fetch path"] = (FUNCTIONS["fetcher_fn"], FETCH_PATH)
    built_codes["fetcher_fn to its fetch path, with a secret"] = (FUNCTIONS["fetcher_fn"], FETCH_PATH_SECRET)
    built_codes["parser_fn to its dependencies"] = (FUNCTIONS["parser_fn"], PARSER_DEPENDENCIES)
    codes = {"first mapping load": FIRST_LOAD, "mapping parse, warm": WARM_PARSE}
    names = [*built_codes, *codes]
    samples: dict[str, dict[str, list[float]]] = {name: {tree: [] for tree in trees} for name in names}
    for run in range(runs):
        order = list(trees) if run % 2 else list(reversed(trees))  # neither tree always warms the other's cache
        for name in names:
            for label in order:
                if name in built_codes:
                    function, code = built_codes[name]
                    samples[name][label].append(lambda_ms(builds[label], function, code))
                else:
                    samples[name][label].append(run_ms(trees[label], codes[name]))
    return {name: {label: round(statistics.median(v), 1) for label, v in by.items()} for name, by in samples.items()}


def markdown(result: dict[str, Any]) -> str:
    this, other = "this tree", result["against"]
    lines = [
        "# Cold import and mapping load",
        "",
        f"`python -m bench.bench_cold_import --against {other} --runs {result['runs']}`: a fresh interpreter per "
        "figure, its CPU time (on an idle machine the same as its wall time; far less inflated by a shared "
        f"machine's load), median of {result['runs']}, both trees interleaved in one run. The handlers run as "
        "Lambda runs them: each tree's `sam build` output alone on the path, no bytecode written (`/opt` is "
        "read-only), in the environment Lambda gives them (the template's `Tracing: Active`: the X-Ray daemon's "
        "address, so the Tracer and the X-Ray SDK are built at import; the role's credentials); the fetch path is "
        "built with the fetcher's settings (OpenSearch signed with SigV4, an event bus), before the first batch "
        'connects to anything; "with a secret" adds what the deployed fetch path builds to read its database '
        "secret (`DB_SECRET_ARN`, always set by the template: Powertools' Secrets Manager provider and its client, "
        "as each tree builds them), the request left out; the parser's dependencies are its first invocation's "
        "(settings, the mapping checked, the queue, dead-letter and Lambda clients). The mapping figures run on "
        "this machine's virtualenv.",
        "",
        f"| | {other} CPU ms | this tree CPU ms | this tree / {other} |",
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
    for function, found in result.get("breakdown", {}).items():
        total = found["self_ms_in_all"]
        lines += [
            "",
            f"## Where `import {function}` goes, this tree",
            "",
            f"`python -X importtime`, median of {result['runs']} (wall time, importtime's own cost included: "
            f"{total:.0f} ms of self time in all). Self: the package's own modules, these add up; cumulative: from "
            "the package's first import to its return, what it pulled in included.",
            "",
            "| package | self ms | cumulative ms | first imported by |",
            "|---|---|---|---|",
        ]
        lines += [
            f"| {row['package']} | {row['self_ms']} | {row['cumulative_ms']} | {row['first_imported_by']} |"
            for row in found["packages"]
        ]
        lines.append(f"| {found['others']} others | {found['others_self_ms']} | | |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", default="7d58aa2", help="the commit to compare with (default: %(default)s)")
    parser.add_argument("--runs", type=int, default=9)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="fanout-cold-import-") as temporary:
        other, builds = Path(temporary) / "tree", Path(temporary) / "builds"
        other.mkdir()
        archive = subprocess.run(["git", "archive", args.against], cwd=ROOT, capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(other)], input=archive, check=True)
        trees = {"this tree": ROOT, args.against: other}
        built_trees = {label: built(tree, builds / str(n)) for n, (label, tree) in enumerate(trees.items())}
        medians = measure(trees, built_trees, args.runs)
        by_function = {h: breakdown(built_trees["this tree"], FUNCTIONS[h], args.runs) for h in HANDLERS}
    result = {
        "against": args.against,
        "runs": args.runs,
        "medians": medians,
        "schema_check_ms": schema_checks(ROOT),
        "breakdown": by_function,
    }
    write_results("cold_import", result, markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
