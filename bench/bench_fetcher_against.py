"""The fetcher's CPU per 1,000 changes, this tree against another commit, side by side in one run.

bench_fetcher's packed shape (drained batches packed as the parser sends them, 10 messages an invocation, through
the fetcher's entry on real MySQL 8.0, OpenSearch and ministack DynamoDB), run by each tree's own code: the other
commit is exported with ``git archive``, and a child interpreter per tree and pair, with that tree first on its
path, builds its fetcher with that tree's ``bench.bench_fetcher`` helpers (as that tree's handler builds it: the
garbage-collector freeze included where its handler does it), warms it up and applies the same changes
``ROUNDS`` times. The trees alternate, pair by pair, so that the load of a shared machine falls on both; what to
quote is the ratio.

    python -m bench.bench_fetcher_against [--against fe0c605] [--pairs 3]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
ROWS = 4000
ROUNDS = 3


def child() -> None:
    """Run in a tree's interpreter: the packed shape's CPU ms per 1,000 changes, each of ROUNDS runs."""
    # imported here, where the tree measured comes first on the path (this file runs the child of either tree)
    from bench import bench_fetcher as b
    from bench.harness import create_replica_table, local_services, posts_database
    from fanout.model.change import Change
    from fanout.model.mapping import Mappings, default_mappings
    from fanout.pipeline.fetcher import Fetcher
    from fanout.sinks.opensearch import make_client
    from fanout.source.reader import DatabaseSource
    from local.database import drop_database
    from tests.support.indices import delete_index
    from tests.support.mappings import in_index

    tree = Path(os.environ["BENCH_TREE"])
    cfg = local_services()
    db_name, conn = posts_database(cfg, ROWS)
    _, table = create_replica_table(cfg, db_name)
    opensearch = make_client(cfg.opensearch_endpoint)
    posts = default_mappings().get("posts")
    assert posts is not None
    mapping = in_index(posts, db_name.replace("_", "-"))
    sinks = b.sinks_for(cfg, opensearch, table.name)
    fetcher = Fetcher(Mappings({"posts": mapping}), DatabaseSource.over(conn), sinks, reject=b.reject)
    if "gc.freeze()" in (tree / "fetcher_fn" / "app.py").read_text(encoding="utf-8"):
        gc.freeze()  # as this tree's handler does once its fetcher is built
    out, sys.stdout = sys.stdout, open(os.devnull, "w")  # noqa: SIM115 - the metric blobs, printed as in Lambda
    try:
        now_us = int(time.time() * 1_000_000)
        changes = [Change("posts", (("id", i + 1),), "update", now_us, "bench") for i in range(ROWS)]
        bodies, sends = b.queued(changes, packed=True)
        b.run(fetcher, bodies, 10, 0, ROWS)  # warm up: index, pools
        cpu = [b.run(fetcher, bodies, 10, sends, ROWS)["cpu_ms_per_1000"] for _ in range(ROUNDS)]
    finally:
        sys.stdout = out
        table.delete()
        delete_index(opensearch, mapping.opensearch.index)
        drop_database(cfg, db_name)
    print(json.dumps(cpu))


def run_tree(tree: Path) -> list[float]:
    env = {**os.environ, "PYTHONPATH": f"{tree}:{tree / 'layers' / 'common'}", "BENCH_TREE": str(tree)}
    done = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--child"],
        env=env,
        cwd=tree,
        capture_output=True,
        text=True,
        check=True,
    )
    runs: list[float] = json.loads(done.stdout.strip().splitlines()[-1])
    return runs


def markdown(result: dict[str, Any]) -> str:
    other, this = result["against"], result["this tree"]
    against = result[other]
    lines = [
        "# The fetcher's CPU, this tree against another commit (side by side in one run)",
        "",
        f"`python -m bench.bench_fetcher_against --against {other} --pairs {result['pairs']}`: bench_fetcher's packed "
        f"shape ({ROWS} changes, 10 messages an invocation) run by each tree's own code, {ROUNDS} runs a child, the "
        "trees alternating pair by pair.",
        "",
        f"| pair | {other} CPU ms /1k | this tree CPU ms /1k | this tree / {other} |",
        "|---|---|---|---|",
    ]
    for n, (a, b) in enumerate(zip(against, this, strict=True), 1):
        lines.append(f"| {n} | {a} | {b} | {b / a:.2f} |")
    a, b = statistics.median(against), statistics.median(this)
    lines.append(f"| **median** | **{a}** | **{b}** | **{b / a:.2f}** |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", default="fe0c605", help="the commit to compare with (default: %(default)s)")
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child()
        return 0
    from bench.harness import write_results

    result: dict[str, Any] = {"against": args.against, "pairs": args.pairs, "this tree": [], args.against: []}
    with tempfile.TemporaryDirectory(prefix="fanout-fetcher-against-") as other:
        archive = subprocess.run(["git", "archive", args.against], cwd=ROOT, capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", other], input=archive, check=True)
        os.symlink(ROOT / ".local", Path(other) / ".local")  # the same local services, already installed
        for pair in range(args.pairs):
            order = [("this tree", ROOT), (args.against, Path(other))]
            for label, tree in order if pair % 2 else reversed(order):
                result[label].append(statistics.median(run_tree(tree)))
    write_results("fetcher_against", result, markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
