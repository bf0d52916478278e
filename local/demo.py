"""The demo: change rows in MySQL (8.0, Aurora MySQL 3's engine) and watch them arrive in OpenSearch and DynamoDB.

Runs against the stack that `make up` started (it reads .local/stack.env).
Two tables: in `posts` (integer key) it inserts three posts, updates one,
changes the primary key of another and deletes a third; in `tenant_settings`
(composite string key, JSON value, renamed and excluded columns) it inserts
three settings, updates one's JSON, renames another's key (case only: the
same key to MySQL's collation, a new document to the sinks) and deletes the
third. Then it waits until both sinks agree with the source for every touched
key and prints the three side by side. Then composed documents (`articles`,
README.md "Composed documents"): an author with three articles, comments and
tags; a search for the author's name finds the published ones; renaming the
author updates every article; unpublishing one removes it. Exits 0 only if
everything agrees.
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

from fanout.model.change import Change  # noqa: E402
from fanout.model.mapping import default_mappings  # noqa: E402
from fanout.operations.verify import RowComparison, compare_row  # noqa: E402
from local.config import StackEnv  # noqa: E402
from local.database import source_connection  # noqa: E402

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


def make_setting_changes(conn, run: str) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    """Settings of one tenant: insert three, update a JSON value, change a key's case, delete one."""
    tenant = f"acme-{run}"
    with conn.cursor() as cur:
        cur.execute(
            "INSERT INTO tenant_settings (tenant, setting_key, value, description, secret_hash) VALUES "
            "(%s, 'theme', JSON_OBJECT('dark', TRUE, 'accent', '#ff6600'), 'Colours 🎨', UNHEX(SHA2('s', 256))), "
            "(%s, 'locale', JSON_QUOTE('fr-CA'), 'Langue et région', NULL), "
            "(%s, 'beta: new editor', 'true', NULL, NULL)",
            (tenant, tenant, tenant),
        )
        cur.execute(
            "UPDATE tenant_settings SET value = JSON_SET(value, '$.dark', FALSE), revision = revision + 1 "
            "WHERE tenant = %s AND setting_key = 'theme'",
            (tenant,),
        )
        cur.execute(
            "UPDATE tenant_settings SET setting_key = 'Locale' WHERE tenant = %s AND setting_key = 'locale'", (tenant,)
        )
        cur.execute("DELETE FROM tenant_settings WHERE tenant = %s AND setting_key = 'beta: new editor'", (tenant,))
    return [(tenant, "theme"), (tenant, "locale"), (tenant, "Locale"), (tenant, "beta: new editor")]


def describe_post(row: dict) -> str:  # type: ignore[type-arg]
    return f"{row['title'][:34]!r} by {row['author']}, {row['status']}"


def describe_setting(row: dict) -> str:  # type: ignore[type-arg]
    return f"{row['setting_key']!r} = {row['value'].text[:36]} (rev {row['revision']})"


def render(results: list[RowComparison], table_name: str, index: str, table: str, describe) -> str:  # type: ignore[no-untyped-def]
    source_title = f"source (MySQL {table_name})"
    lines = [f"{'key':>24}  {source_title:<52} {'OpenSearch ' + index:<26} {'DynamoDB ' + table[:30]}"]
    for r in results:
        if r.source is None:
            source = "(no row: deleted or key changed)"
        else:
            source = describe(r.source)
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
        key = r.key if len(r.key) <= 24 else "…" + r.key[-23:]
        lines.append(f"{key:>24}  {source[:52]:<52} {os_cell:<26} {ddb_cell}")
        for problem in filter(None, (r.opensearch_problem, r.dynamodb_problem)):
            lines.append(f"{'':>8}↳ {problem}")
    return "\n".join(lines)


def main() -> int:
    import boto3

    env = StackEnv.read()
    if env is None:
        print("no .local/stack.env: run `make up` first", file=sys.stderr)
        return 2
    os.environ.update({k: v for k, v in env.environ().items() if k.startswith("AWS_")})
    from fanout.sinks.opensearch import make_client

    mappings = default_mappings()
    conn = source_connection(env)
    opensearch = make_client(env.opensearch_endpoint)
    table = boto3.resource("dynamodb").Table(env.dynamodb_table)

    run = uuid.uuid4().hex[:6]
    started = time.monotonic()
    ids = make_changes(conn, run)
    print(f"wrote to MySQL: inserted 3 posts, updated {ids[0]}, moved {ids[1]} → {ids[2]}, deleted {ids[3]}")
    settings = make_setting_changes(conn, run)
    print(f"and to tenant_settings of {settings[0][0]!r}: inserted 3, updated 'theme', moved 'locale' → 'Locale', "
          "deleted 'beta: new editor'")  # fmt: skip
    tables = {
        "posts": ([Change("posts", (("id", i),), "update", 0) for i in ids], describe_post),
        "tenant_settings": (
            [Change("tenant_settings", (("tenant", t), ("setting_key", k)), "update", 0) for t, k in settings],
            describe_setting,
        ),
    }
    while True:
        results = {
            name: [compare_row(conn, mappings.tables[name], c, opensearch, table) for c in changes]
            for name, (changes, _) in tables.items()
        }
        elapsed = time.monotonic() - started
        everything = [r for rs in results.values() for r in rs]
        if all(settled(r) for r in everything) or elapsed > TIMEOUT_SECONDS:
            break
        time.sleep(0.25)
    for name, (_, describe) in tables.items():
        print()
        print(render(results[name], name, mappings.tables[name].opensearch.index, env.dynamodb_table, describe))
    if not all(settled(r) for r in everything):
        print(f"\nsinks still disagree with the source after {elapsed:.0f}s; see .local/logs/", file=sys.stderr)
        return 1
    print(f"\nall {len(everything)} keys of 2 tables agree in MySQL, OpenSearch and DynamoDB after {elapsed:.1f}s")
    return composed_demo(conn, opensearch, table, mappings.tables["articles"], run)


def composed_demo(conn, opensearch, table, articles, run: str) -> int:  # type: ignore[no-untyped-def]
    """Search documents built from several tables: found by the author's name, renamed, unpublished."""
    index = articles.opensearch.index
    name, renamed = f"Ada Lovelace {run}", f"Ada King {run}"
    with conn.cursor() as cur:
        cur.execute("INSERT INTO authors (name) VALUES (%s)", (name,))
        author = cur.lastrowid
        ids = []
        for title, status in (("Notes on the engine", "published"), ("On numbers", "published"), ("Draft", "draft")):
            cur.execute(
                "INSERT INTO articles (title, body, status, author_id) VALUES (%s, 'b', %s, %s)",
                (f"{title} [{run}]", status, author),
            )
            ids.append(cur.lastrowid)
        cur.execute("INSERT INTO tags (name) VALUES (%s)", (f"history-{run}",))
        cur.execute("INSERT INTO article_tags VALUES (%s, %s)", (ids[0], cur.lastrowid))
        cur.execute("INSERT INTO comments (article_id, commenter, body) VALUES (%s, 'Charles', 'Splendid.')", (ids[0],))
    print(f"\ncomposed documents: author {name!r} with articles {ids} (the last a draft), a tag and a comment")

    def search(text: str) -> list[int]:
        opensearch.indices.refresh(index=index)
        query = {"query": {"match_phrase": {"author.name": text}}}
        hits = opensearch.search(index=index, body=query)["hits"]["hits"]
        return sorted(int(hit["_id"]) for hit in hits)

    def agreed() -> bool:
        changes = [Change("articles", (("id", i),), "update", 0) for i in ids]
        return all(compare_row(conn, articles, c, opensearch, table).agrees for c in changes)

    def wait(what: str, done) -> bool:  # type: ignore[no-untyped-def]
        started = time.monotonic()
        while time.monotonic() - started < TIMEOUT_SECONDS:
            if agreed() and done():
                print(f"  {what} ({time.monotonic() - started:.1f}s)")
                return True
            time.sleep(0.25)
        print(f"  {what}: not after {TIMEOUT_SECONDS:.0f}s; see .local/logs/", file=sys.stderr)
        return False

    steps = [
        (f"search {name!r} finds the published articles {ids[:2]}", lambda: search(name) == ids[:2]),
    ]
    if not wait(*steps[0]):
        return 1
    first = opensearch.get(index=index, id=str(ids[0]))["_source"]
    print(f"  article {ids[0]}: author {first['author']}, tags {first['tags']}, comments {first['comments']}")
    with conn.cursor() as cur:
        cur.execute("UPDATE authors SET name = %s WHERE id = %s", (renamed, author))
    if not wait(
        f"renamed to {renamed!r}: the search finds both", lambda: search(renamed) == ids[:2] and not search(name)
    ):
        return 1
    with conn.cursor() as cur:
        cur.execute("UPDATE articles SET status = 'draft' WHERE id = %s", (ids[1],))
    if not wait(f"article {ids[1]} unpublished: removed", lambda: search(renamed) == ids[:1]):
        return 1
    print("composed documents agree in MySQL, OpenSearch and DynamoDB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
