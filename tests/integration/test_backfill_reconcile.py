"""Backfill and reconcile on real parts: MySQL 8.0, a real OpenSearch node, DynamoDB on ministack.

Both go through the live fetch path (fanout.pipeline.fetcher.Fetcher with the real locking reader and
both real sinks), so what is proven here is what runs in production.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from fanout.model.change import Change
from fanout.operations.backfill import BackfillJob, KeyRange, load_checkpoint, run_backfill
from fanout.pipeline.fetcher import Fetcher, FetchFailed
from fanout.source.connection import connect
from fanout.source.reader import DatabaseSource
from tests.support.backfill import Harness, cli_environment, insert_posts, insert_settings

# The "large table". Backfill and reconcile are linear in it (bench/bench_backfill_reconcile.py
# reports the rate at this size against a tenth of it); this test is the slowest of the suite.
LARGE_TABLE_ROWS = 100_000


def backfill(h: Harness, table: str, **options: Any) -> Any:
    return run_backfill(h.conn, BackfillJob(table), h.fetcher(), **options)


# --------------------------------------------------------------------------- backfill


def test_backfill_of_a_large_table_reaches_both_sinks_and_reconcile_finds_no_drift(harness: Harness) -> None:
    h = harness
    # Given a large posts table and a composite-key table, never replicated
    insert_posts(h, LARGE_TABLE_ROWS)
    insert_settings(h, ["acme", "Globex"], 5)
    before = h.reconcile(sample=50)
    assert before.tables["posts"]["opensearch"].missing == before.tables["posts"]["opensearch"].checked > 0
    assert not before.agrees

    # When both tables are backfilled
    posts = backfill(h, "posts", batch_size=500)
    settings = backfill(h, "tenant_settings", batch_size=4)

    # Then every row was fetched once, the jobs are done, and a full reconcile finds no drift
    assert (posts.status, posts.rows_done, settings.status, settings.rows_done) == (
        "done",
        LARGE_TABLE_ROWS,
        "done",
        10,
    )
    assert h.fetches == LARGE_TABLE_ROWS + 10
    assert posts.outcomes == {"opensearch:written": LARGE_TABLE_ROWS, "dynamodb:written": LARGE_TABLE_ROWS}
    report = h.reconcile()
    assert report.agrees, report.summary()
    assert report.tables["posts"]["opensearch"].checked == LARGE_TABLE_ROWS
    assert report.tables["posts"]["dynamodb"].checked == LARGE_TABLE_ROWS
    assert report.tables["tenant_settings"]["dynamodb"].checked == 10
    assert report.source_rows == {"posts": LARGE_TABLE_ROWS, "tenant_settings": 10, "articles": 0}

    # And running the finished job again does nothing
    again = backfill(h, "posts", batch_size=250)
    assert (again.status, again.rows_this_run) == ("done", 0)
    assert h.fetches == LARGE_TABLE_ROWS + 10


def test_a_backfill_killed_half_way_resumes_after_its_checkpoint(harness: Harness) -> None:
    h = harness
    # Given 200 rows, pages of 20, and a fetch path that dies during the 6th page
    insert_posts(h, 200)
    h.fail_after = 5 * 20 + 7
    with pytest.raises(FetchFailed):
        backfill(h, "posts", batch_size=20)
    # Then the checkpoint holds the last completed page (5 pages, up to id 100), not the failed one
    job = BackfillJob("posts")
    checkpoint = load_checkpoint(h.conn, h.mapping("posts"), job.job_id)
    assert checkpoint is not None
    assert (checkpoint.last_key, checkpoint.rows_done, checkpoint.pages_done, checkpoint.status) == (
        (100,),
        100,
        5,
        "running",
    )

    # When it runs again
    h.fail_after, h.fetches = None, 0
    resumed = backfill(h, "posts", batch_size=20)
    # Then it starts after id 100 and fetches only the remaining 100 rows
    assert resumed.resumed_from == (100,)
    assert h.fetches == 100
    assert (resumed.status, resumed.rows_done, resumed.rows_this_run) == ("done", 200, 100)
    assert h.reconcile().agrees


def test_a_backfill_process_killed_mid_run_resumes_without_redoing_a_page(
    harness: Harness, local_aws: dict[str, str], opensearch_endpoint: str, tmp_path: Path
) -> None:
    h = harness
    # Given 1000 posts and a `fanout backfill` process copying them at a bounded rate, 50 a page
    insert_posts(h, 1000)
    env = {**os.environ, **cli_environment(h, local_aws, opensearch_endpoint, tmp_path)}
    command = [str(Path(sys.executable).parent / "fanout"), "backfill", "posts", "--batch-size", "50", "--rate", "250"]
    job_id = BackfillJob("posts").job_id
    process = subprocess.Popen([*command, "--quiet"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        # When it is killed (SIGKILL: no cleanup of any kind) once a few pages are done
        deadline = time.monotonic() + 60
        while (c := load_checkpoint(h.conn, h.mapping("posts"), job_id)) is None or c.rows_done < 200:
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "the backfill made no progress"
            time.sleep(0.05)
    finally:
        process.kill()
        process.wait()
    killed_at = load_checkpoint(h.conn, h.mapping("posts"), job_id)
    assert killed_at is not None and killed_at.status == "running" and 200 <= killed_at.rows_done < 1000
    assert killed_at.last_key == (killed_at.rows_done,)  # whole pages only: the checkpoint is the last done page

    # And the same command runs again
    again = subprocess.run([*command, "--json"], env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    resumed = json.loads(again.stdout)["jobs"][0]
    # Then it starts after the last completed page, copies only the rest, and the sinks agree
    assert resumed["resumed_from"] == list(killed_at.last_key)
    assert (resumed["status"], resumed["rows_done"]) == ("done", 1000)
    assert resumed["rows_this_run"] == 1000 - killed_at.rows_done
    assert h.reconcile(tables=["posts"]).agrees


def test_a_backfill_stopped_after_n_pages_continues_and_honours_range_and_filter(harness: Harness) -> None:
    h = harness
    # Given 100 posts, a third of them drafts
    insert_posts(h, 100)
    h.execute("UPDATE posts SET status = 'draft' WHERE id % 3 = 0")
    job = BackfillJob("posts", KeyRange((11,), (60,)), where="status = %s", where_params=("published",))
    # When a run stops after 2 pages (as a Lambda running out of time does) and is run again
    first = run_backfill(h.conn, job, h.fetcher(), batch_size=10, max_pages=2)
    assert (first.status, first.rows_this_run, first.last_key) == ("running", 20, (40,))
    second = run_backfill(h.conn, job, h.fetcher(), batch_size=10)
    # Then exactly the published posts 11..60 were copied, each once
    expected = [i for i in range(11, 61) if i % 3 != 0]
    assert second.status == "done" and second.rows_done == len(expected) == h.fetches
    docs = h.readers.documents(h.mapping("posts"), [str(i) for i in range(1, 101)])
    assert sorted(int(i) for i in docs) == expected


def test_a_backfill_beside_a_live_writer_leaves_no_stale_row(harness: Harness) -> None:
    h = harness
    # Given 600 rows, and a writer that keeps updating, inserting and deleting rows, each change
    # fetched at once on its own connection as the live fetcher would
    insert_posts(h, 600)
    stop = threading.Event()
    errors: list[BaseException] = []

    def writer() -> None:
        rng = random.Random(5)
        conn, reader = connect(h.settings), connect(h.settings)
        live = Fetcher(h.mappings, DatabaseSource.over(reader), h.sinks)  # as the live fetcher would
        try:
            n = 0
            while not stop.is_set():
                n += 1
                key = rng.randint(1, 650)
                with conn.cursor() as cur:
                    if n % 7 == 0:
                        cur.execute("DELETE FROM posts WHERE id = %s", (key,))
                    else:
                        cur.execute(
                            "INSERT INTO posts (id, title, body, author) VALUES (%s, %s, 'b', 'w') "
                            "ON DUPLICATE KEY UPDATE title = VALUES(title)",
                            (key, f"live {n}"),
                        )
                change = Change("posts", (("id", key),), "update", 1)
                live.apply([change])
        except BaseException as exc:  # handed to the test thread
            errors.append(exc)
        finally:
            conn.close()
            reader.close()

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    try:
        # When the table is backfilled meanwhile
        result = backfill(h, "posts", batch_size=50)
    finally:
        stop.set()
        thread.join(30)
    assert not errors, errors
    assert result.status == "done"
    # Then, once both stopped, the sinks equal the source: no stale, missing or orphan row
    report = h.reconcile()
    assert report.agrees, report.summary()


# --------------------------------------------------------------------------- reconcile


def test_reconcile_finds_each_planted_drift_and_repair_removes_it(harness: Harness) -> None:
    h = harness
    # Given both tables backfilled and in agreement
    insert_posts(h, 30)
    insert_settings(h, ["acme"], 3)
    backfill(h, "posts", batch_size=10)
    backfill(h, "tenant_settings", batch_size=10)
    assert h.reconcile().agrees
    posts, settings = h.mapping("posts"), h.mapping("tenant_settings")

    # When drift is planted: a missing and a stale entry and an orphan in each sink
    h.opensearch.delete(index=posts.opensearch.index, id="3")  # missing doc
    h.opensearch.index(index=posts.opensearch.index, id="4", body={"id": 4, "title": "edited by hand"})  # stale doc
    h.opensearch.index(index=posts.opensearch.index, id="9001", body={"id": 9001, "title": "orphan"})  # orphan doc
    h.opensearch.index(index=settings.opensearch.index, id="ghost:k", body={"tenant": "ghost"})  # orphan (composite)
    h.table.delete_item(Key={"pk": "posts#5"})  # missing item
    h.table.update_item(  # stale item
        Key={"pk": "posts#6"},
        UpdateExpression="SET title = :t",
        ExpressionAttributeValues={":t": "edited by hand"},
    )
    orphan_item = {"pk": "posts#9002", "_table": "posts", "_version": Decimal(1), "_deleted": False, "id": 9002}
    h.table.put_item(Item=orphan_item)  # orphan item
    h.table.put_item(  # an orphan of the composite-key table
        Item={"pk": "tenant_settings#ghost#k", "_table": "tenant_settings", "_version": Decimal(1), "_deleted": False}
    )
    h.opensearch.index(index=posts.opensearch.index, id="not-a-key", body={"x": 1})  # no key of posts
    foreign_item = {"pk": "posts#x1", "_table": "posts", "_version": Decimal(1), "_deleted": False}
    h.table.put_item(Item=foreign_item)  # no key of posts either (its id is an integer)
    h.opensearch.indices.refresh(index=f"{posts.opensearch.index},{settings.opensearch.index}")  # searchable now

    # Then reconcile reports each of them, and nothing else
    found = h.reconcile()
    assert not found.agrees
    os_posts, ddb_posts = found.tables["posts"]["opensearch"], found.tables["posts"]["dynamodb"]
    assert (os_posts.missing, os_posts.stale, os_posts.orphan) == (1, 1, 2)
    assert [e["key"] for e in os_posts.examples["missing"]] == [[3]]
    assert [e["key"] for e in os_posts.examples["stale"]] == [[4]]
    assert sorted(map(str, (e["key"] for e in os_posts.examples["orphan"]))) == ["None", "[9001]"]
    assert (ddb_posts.missing, ddb_posts.stale, ddb_posts.orphan) == (1, 1, 2)
    assert [e["key"] for e in ddb_posts.examples["stale"]] == [[6]]
    assert found.tables["tenant_settings"]["opensearch"].orphan == 1
    assert found.tables["tenant_settings"]["dynamodb"].orphan == 1
    assert found.drift == 10

    # When repaired
    repaired = h.repair()
    # Then everything was repaired: the keys through the fetch path, the entries that name no key deleted
    assert repaired.agrees and repaired.unrepaired == 0, repaired.summary()
    assert repaired.tables["posts"]["opensearch"].repaired == 4
    assert repaired.tables["posts"]["dynamodb"].repaired == 4
    # and the orphans became versioned deletes: gone from OpenSearch, a tombstone in DynamoDB
    assert h.opensearch.exists(index=posts.opensearch.index, id="9001") is False
    tombstone = h.table.get_item(Key={"pk": "posts#9002"}, ConsistentRead=True)["Item"]
    assert tombstone["_deleted"] is True and tombstone["_version"] > 1
    # and the entries that name no key are gone
    assert h.opensearch.exists(index=posts.opensearch.index, id="not-a-key") is False
    assert "Item" not in h.table.get_item(Key={"pk": "posts#x1"}, ConsistentRead=True)
    # And a second run finds nothing
    assert h.reconcile().agrees


def plant_orphans(h: Harness, keys: list[int]) -> None:
    """Posts the source does not have, in both sinks (as a delete lost with the kill switch on)."""
    posts = h.mapping("posts")
    bulk: list[dict[str, Any]] = []
    for key in keys:
        bulk += [{"index": {"_index": posts.opensearch.index, "_id": str(key)}}, {"id": key, "title": "orphan"}]
    assert h.opensearch.bulk(body=bulk, refresh=True)["errors"] is False
    with h.table.batch_writer() as batch:
        for key in keys:
            batch.put_item(Item={"pk": f"posts#{key}", "_table": "posts", "_version": Decimal(1), "_deleted": False})


def test_a_sampled_reconcile_looks_for_orphans_in_both_sinks(harness: Harness) -> None:
    h = harness
    # Given a small table in agreement, then an orphan in each sink
    insert_posts(h, 40)
    backfill(h, "posts", batch_size=20)
    plant_orphans(h, [7001])
    # When a sample larger than the table is compared, Then it covers the sinks entirely and finds both
    small = h.reconcile(sample=100, tables=["posts"])
    assert (small.tables["posts"]["opensearch"].orphan, small.tables["posts"]["dynamodb"].orphan) == (1, 1)
    assert not small.agrees


def test_a_sampled_reconcile_finds_a_share_of_the_orphans_of_a_bigger_table(harness: Harness) -> None:
    h = harness
    # Given 2000 rows in agreement and 100 orphans (a 20th of the sinks' entries)
    insert_posts(h, 2000)
    backfill(h, "posts", batch_size=500)
    plant_orphans(h, list(range(5001, 5101)))
    # When 200 rows are sampled
    report = h.reconcile(sample=200, tables=["posts"])
    # Then it looked at about as many sink entries as rows, and found some orphans in each sink
    # (expected about 10 each; the chance of finding none is below 1 in 10,000 per sink)
    for sink in ("opensearch", "dynamodb"):
        tally = report.tables["posts"][sink]
        assert 1 <= tally.orphan <= 60, (sink, tally.as_dict())
        assert all(5000 < e["key"][0] <= 5100 for e in tally.examples["orphan"])
    assert report.source_rows["posts"] <= 200 and not report.agrees


# --------------------------------------------------------------------------- the commands


def test_the_commands_backfill_then_reconcile_with_json_and_exit_status(
    harness: Harness,
    local_aws: dict[str, str],
    opensearch_endpoint: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    from fanout_cli.main import main

    h = harness
    for name, value in cli_environment(h, local_aws, opensearch_endpoint, tmp_path).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr("fanout.pipeline.wiring.default_mappings", lambda: h.mappings)  # loaded once per process
    insert_posts(h, 120)

    # When reconcile runs before any backfill, Then it exits 1 and the JSON names the missing rows
    assert main(["reconcile", "posts", "--json"]) == 1
    before = json.loads(capsys.readouterr().out)
    assert before["tables"]["posts"]["opensearch"]["missing"] == 120 and before["agrees"] is False

    # When posts 1..60 are backfilled, and then the rest (the same job resumes only for the same range)
    assert main(["backfill", "posts", "--to", "60", "--batch-size", "8", "--json"]) == 0
    captured = capsys.readouterr()
    first = json.loads(captured.out)["jobs"][0]  # the report alone: no metric blobs on stdout
    assert (first["status"], first["rows_done"]) == ("done", 60)
    # (and on stderr one log line per page of 8, not one per row and sink, and no metric blobs)
    logged = [json.loads(line) for line in captured.err.splitlines() if line.startswith("{")]
    assert [line["message"] for line in logged].count("changes applied") == 8
    assert len(logged) <= 8 + 4 and not [line for line in logged if "_aws" in line]
    assert main(["backfill", "posts", "--quiet"]) == 0
    captured = capsys.readouterr()
    assert "posts: done, 120 rows in total" in captured.out
    assert captured.err == ""  # --quiet: only warnings and errors would be logged
    main(["reconcile", "posts", "--repair", "--quiet"])  # (whatever it finds: its repairs are logged too)
    assert capsys.readouterr().err == ""

    # Then reconcile agrees and exits 0, with a human summary
    assert main(["reconcile", "posts"]) == 0
    out = capsys.readouterr().out
    assert "posts -> opensearch: 120 checked, 0 missing, 0 stale, 0 orphans" in out
    assert "source and sinks agree" in out


# --------------------------------------------------------------------------- composed documents


def test_backfill_and_reconcile_compose_documents_and_repair_rebuilds_them(harness: Harness) -> None:
    h = harness
    # Given published and draft articles with an author, comments and tags, never replicated
    h.execute("INSERT INTO authors (id, name) VALUES (1, 'Ann')")
    h.execute(
        "INSERT INTO articles (id, title, body, status, author_id) VALUES "
        "(1, 'one', 'b', 'published', 1), (2, 'two', 'b', 'published', 1), (3, 'three', 'b', 'draft', 1)"
    )
    h.execute("INSERT INTO comments (id, article_id, commenter, body) VALUES (1, 1, 'c', 'first'), (2, 2, 'c', 'x')")
    h.execute("INSERT INTO tags (id, name) VALUES (1, 'red')")
    h.execute("INSERT INTO article_tags VALUES (1, 1)")

    # When the root table is backfilled
    job = backfill(h, "articles", batch_size=2)

    # Then the published articles are composed documents; the draft is absent (a delete), and reconcile agrees
    assert (job.status, job.rows_done) == ("done", 3)
    articles = h.mapping("articles")
    h.opensearch.indices.refresh(index=articles.opensearch.index)
    doc = h.opensearch.get(index=articles.opensearch.index, id="1")["_source"]
    assert doc["author"] == {"id": 1, "name": "Ann"} and doc["tags"] == ["red"]
    assert [c["body"] for c in doc["comments"]] == ["first"]
    assert not h.opensearch.exists(index=articles.opensearch.index, id="3")
    report = h.reconcile(tables=["articles"])
    assert report.agrees, report.summary()
    assert report.tables["articles"]["opensearch"].checked == 2

    # When related rows change without reaching the sinks, and an article is unpublished
    h.execute("UPDATE comments SET body = 'edited' WHERE id = 1")
    h.execute("UPDATE authors SET name = 'Ann B.' WHERE id = 1")
    h.execute("UPDATE articles SET status = 'draft' WHERE id = 2")

    # Then reconcile compares the composed shape: article 1 drifted, article 2 is an orphan in both sinks
    report = h.reconcile(tables=["articles"])
    assert not report.agrees
    assert report.tables["articles"]["opensearch"].drift >= 2, report.summary()
    # and repair rebuilds the composed document and removes the unpublished one
    h.repair()
    assert h.reconcile(tables=["articles"]).agrees
    h.opensearch.indices.refresh(index=articles.opensearch.index)
    doc = h.opensearch.get(index=articles.opensearch.index, id="1")["_source"]
    assert doc["author"]["name"] == "Ann B." and doc["comments"][0]["body"] == "edited"
    assert not h.opensearch.exists(index=articles.opensearch.index, id="2")
