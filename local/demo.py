"""The demo: change rows in MariaDB and watch them arrive in OpenSearch and DynamoDB.

Runs against the stack that `make up` started (it reads .local/stack.env):
inserts three posts, updates one, changes the primary key of another, deletes
a third, then waits until both sinks agree with the source for every touched
key and prints the three side by side. Exits 0 only if they all agree.
"""

from __future__ import annotations

import os
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "layers" / "common"))
sys.path.insert(0, str(ROOT))

from fanout.change import Change  # noqa: E402
from fanout.mapping import default_mappings  # noqa: E402
from fanout.verify import RowComparison, compare_row  # noqa: E402
from local.stack import read_stack_env, source_connection  # noqa: E402

TIMEOUT_SECONDS = float(os.environ.get("DEMO_TIMEOUT_SECONDS", "90"))


def make_changes(conn, run: str) -> list[int]:  # type: ignore[no-untyped-def]
    """The demo's writes, each its own transaction, as an application would make them."""
    posts = [
        (f"Hello, fanout [{run}]", "First post: replicated by a trigger, a parser and a fetcher.", "ann"),
        (f"Ünïcödé & 'quotes' 🚀 [{run}]", 'Body with "quotes", a backslash \\ and 日本語.', "björn"),
        (f"Short-lived [{run}]", "This one will be deleted.", "cy"),
    ]
    ids = []
    with conn.cursor() as cur:
        for title, body, author in posts:
            cur.execute("INSERT INTO posts (title, body, author) VALUES (%s, %s, %s)", (title, body, author))
            ids.append(cur.lastrowid)
        first, second, third = ids
        cur.execute("UPDATE posts SET status = 'published', body = CONCAT(body, ' (edited)') WHERE id = %s", (first,))
        cur.execute("SELECT COALESCE(MAX(id), 0) + 1000 FROM posts")
        moved = cur.fetchone()[0]
        cur.execute("UPDATE posts SET id = %s WHERE id = %s", (moved, second))  # primary-key change
        cur.execute("DELETE FROM posts WHERE id = %s", (third,))
    return [first, second, moved, third]


def settled(result: RowComparison) -> bool:
    """Agreement that proves delivery: a row gone from the source must have left a tombstone.

    Absent-and-absent agrees trivially before the pipeline has done anything; the
    DynamoDB tombstone is the fetcher's own record that it processed the delete.
    """
    processed = result.source is not None or bool((result.dynamodb or {}).get("_deleted"))
    return result.agrees and processed


def render(results: list[RowComparison], index: str, table: str) -> str:
    lines = [f"{'id':>6}  {'source (MariaDB posts)':<58} {'OpenSearch ' + index:<26} {'DynamoDB ' + table[:30]}"]
    for r in results:
        if r.source is None:
            source = "(no row: deleted or key changed)"
        else:
            source = f"{r.source['title'][:34]!r} by {r.source['author']}, {r.source['status']}"
        os_state = "absent" if r.opensearch is None else "document"
        if r.dynamodb is None:
            ddb_state = "absent"
        elif r.dynamodb.get("_deleted"):
            ddb_state = "tombstone"
        else:
            ddb_state = "item"
        os_cell = f"{'✓' if not r.opensearch_problem else '✗'} {os_state}"
        version = r.dynamodb.get("_version", "-") if r.dynamodb else "-"
        ddb_cell = f"{'✓' if not r.dynamodb_problem else '✗'} {ddb_state} v{version}"
        lines.append(f"{r.key:>6}  {source:<58} {os_cell:<26} {ddb_cell}")
        for problem in filter(None, (r.opensearch_problem, r.dynamodb_problem)):
            lines.append(f"{'':>8}↳ {problem}")
    return "\n".join(lines)


def main() -> int:
    import boto3

    env = read_stack_env()
    if not env:
        print("no .local/stack.env: run `make up` first", file=sys.stderr)
        return 2
    os.environ.update({k: v for k, v in env.items() if k.startswith("AWS_")})
    from fanout.sinks.opensearch_sink import make_client

    mapping = default_mappings().get("posts")
    assert mapping is not None
    conn = source_connection(env)
    opensearch = make_client(env["OPENSEARCH_ENDPOINT"])
    table = boto3.resource("dynamodb").Table(env["DYNAMODB_TABLE"])

    run = uuid.uuid4().hex[:6]
    started = time.monotonic()
    ids = make_changes(conn, run)
    print(f"wrote to MariaDB: inserted 3 posts, updated {ids[0]}, moved {ids[1]} → {ids[2]}, deleted {ids[3]}")
    changes = [Change("posts", (("id", i),), "update", 0) for i in ids]
    while True:
        results = [compare_row(conn, mapping, c, opensearch, table) for c in changes]
        elapsed = time.monotonic() - started
        if all(settled(r) for r in results) or elapsed > TIMEOUT_SECONDS:
            break
        time.sleep(0.25)
    print(render(results, mapping.opensearch_index, env["DYNAMODB_TABLE"]))
    if all(settled(r) for r in results):
        print(f"\nall {len(results)} keys agree in MariaDB, OpenSearch and DynamoDB after {elapsed:.1f}s")
        return 0
    print(f"\nsinks still disagree with the source after {elapsed:.0f}s; see .local/logs/", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
