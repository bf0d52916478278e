"""`fanout reindex` against MySQL 8.0, a real OpenSearch node and DynamoDB on ministack: the alias moves to a new
generation while writers change the table, a killed run resumes, a rollback and a field type change."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from fanout.model.change import Change
from fanout.model.mapping import Mappings
from fanout.operations.backfill import BackfillJob, load_checkpoint, run_backfill
from fanout.operations.index_drift import index_drifts
from fanout.operations.reconcile import reconcile
from fanout.operations.reindex import Reindex, read_state
from fanout.pipeline.fetcher import Fetcher
from fanout.sinks.generations import alias_indices, settle_seconds, write_set
from fanout.sinks.opensearch import OpenSearchSink
from fanout.source.connection import connect
from fanout.source.reader import DatabaseSource
from tests.support.aws import dynamodb_sink
from tests.support.backfill import Harness, cli_environment, insert_posts

TTL = 1.0  # the write set's lifetime in these tests' fetchers (the deployed default is 10 s)


class Connections:
    """Connections a test opens, closed at its end."""

    def __init__(self, h: Harness) -> None:
        self.h = h
        self.opened: list[Any] = []

    def __call__(self) -> Any:
        conn = connect(self.h.settings)
        self.opened.append(conn)
        return conn

    def close(self) -> None:
        for conn in self.opened:
            conn.close()


@pytest.fixture
def connections(harness: Harness) -> Iterator[Connections]:
    opened = Connections(harness)
    yield opened
    opened.close()


def live_fetcher(h: Harness, connections: Connections, mappings: Mappings | None = None, **sink: Any) -> Fetcher:
    """A fetcher as the deployed one: both sinks, the OpenSearch one caching the write set for ``TTL``."""
    sinks = [OpenSearchSink(h.opensearch, targets_ttl=TTL, **sink), dynamodb_sink(h.table, tombstone_ttl_seconds=3600)]
    return Fetcher(mappings or h.mappings, DatabaseSource.over(connections()), sinks)


def copy_runners(h: Harness, connections: Connections, workers: int, mappings: Mappings | None = None) -> list[Any]:
    """The copy's workers, as ``Maintenance.copy`` builds them: own connections, OpenSearch pinned to the job's
    generation, no DynamoDB."""

    def runner() -> Callable[..., Any]:
        conn, reader = connections(), connections()

        def run(job: BackfillJob, **options: Any) -> Any:
            alias = (mappings or h.mappings).tables[job.table].opensearch.index
            sink = OpenSearchSink(h.opensearch, pinned={alias: job.generation})
            return run_backfill(
                conn, job, Fetcher(mappings or h.mappings, DatabaseSource.over(reader), [sink]), **options
            )

        return run

    return [runner() for _ in range(workers)]


def reindexer(h: Harness, mappings: Mappings | None = None, **options: Any) -> Reindex:
    return Reindex(h.opensearch, h.conn, mappings or h.mappings, h.readers, "1h", targets_ttl=TTL, **options)


def change(key: int) -> Change:
    return Change("posts", (("id", key),), "update", int(time.time() * 1e6))


def agrees(h: Harness, table: str = "posts") -> Any:
    """A full reconcile of ``table`` (OpenSearch through the alias, and DynamoDB), no repair."""
    h.opensearch.indices.refresh(index=h.mapping(table).opensearch.index)
    return reconcile(h.conn, h.mappings, h.readers, tables=[table], page_size=200)


class Writers:
    """Threads that update, delete and insert posts the whole time, each change fetched at once by a live
    fetcher (what the pipeline does a moment later), until stopped."""

    def __init__(self, h: Harness, connections: Connections, count: int, first_free: int) -> None:
        self.h, self.stop, self.errors, self.changes = h, threading.Event(), [], 0
        self.next_id = first_free
        self.lock = threading.Lock()
        self.threads = [
            threading.Thread(target=self.work, args=(connections(), live_fetcher(h, connections), seed))
            for seed in range(count)
        ]

    def work(self, conn: Any, fetcher: Fetcher, seed: int) -> None:
        rng = random.Random(seed)
        try:
            while not self.stop.is_set():
                choice = rng.random()
                with conn.cursor() as cur:
                    if choice < 0.2:
                        with self.lock:
                            key, self.next_id = self.next_id, self.next_id + 1
                        cur.execute(
                            "INSERT INTO posts (id, title, body, author, status) VALUES (%s, 'new', 'b', 'w', 'draft')",
                            (key,),
                        )
                    else:
                        key = rng.randrange(1, self.next_id)
                        if choice < 0.45:
                            cur.execute("DELETE FROM posts WHERE id = %s", (key,))
                        else:
                            cur.execute("UPDATE posts SET title = %s WHERE id = %s", (f"t{rng.random()}", key))
                fetcher.apply([change(key)])
                self.changes += 1
        except Exception as exc:  # noqa: BLE001 - reported by the test
            self.errors.append(exc)

    def __enter__(self) -> Writers:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(30)


class Searches:
    """A thread searching through the alias the whole time, remembering the fewest hits it saw."""

    def __init__(self, h: Harness) -> None:
        self.h, self.stop, self.fewest, self.searches = h, threading.Event(), None, 0
        self.thread = threading.Thread(target=self.work)

    def work(self) -> None:
        alias = self.h.mapping("posts").opensearch.index
        while not self.stop.is_set():
            hits = self.h.opensearch.search(index=alias, body={"size": 0, "track_total_hits": True})
            total = hits["hits"]["total"]["value"]
            self.fewest = total if self.fewest is None else min(self.fewest, total)
            self.searches += 1

    def __enter__(self) -> Searches:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop.set()
        self.thread.join(30)


def test_a_reindex_beside_writers_moves_the_alias_and_search_never_comes_back_empty(
    harness: Harness, connections: Connections
) -> None:
    h = harness
    alias = h.mapping("posts").opensearch.index
    # Given 1500 replicated posts, searchable through the alias
    insert_posts(h, 1500)
    run_backfill(h.conn, BackfillJob("posts"), live_fetcher(h, connections), batch_size=500)
    h.opensearch.indices.refresh(index=alias)
    assert alias_indices(h.opensearch, alias) == (f"{alias}.g1",)

    # When posts is reindexed by two workers while writers update, delete and insert rows the whole time
    with Searches(h) as searches, Writers(h, connections, 3, first_free=1501) as writers:
        result = reindexer(h).run("posts", copy_runners(h, connections, 2), batch_size=100, verify_attempts=5)
    assert writers.errors == [] and writers.changes > 50

    # Then the alias points at the new generation, the old one is still written for rollback
    assert result.status == "swapped", result.drift
    assert (result.old, result.new) == (f"{alias}.g1", f"{alias}.g2")
    assert alias_indices(h.opensearch, alias) == (f"{alias}.g2",)
    assert alias_indices(h.opensearch, write_set(alias)) == (f"{alias}.g1", f"{alias}.g2")
    # And a search through the alias never found nothing
    assert searches.searches > 0 and searches.fewest is not None and searches.fewest > 0
    # And a full reconcile (OpenSearch through the alias, and DynamoDB) is clean with no repair
    report = agrees(h)
    assert report.agrees, report.summary()


def test_the_copy_waits_until_every_fetcher_can_have_seen_the_new_generation(
    harness: Harness, connections: Connections
) -> None:
    h = harness
    # Given a fetcher that read the write set (one generation) a moment ago, on a clock the test moves
    now = [1000.0]
    insert_posts(h, 50)
    fetcher = live_fetcher(h, connections, clock=lambda: now[0])
    run_backfill(h.conn, BackfillJob("posts"), fetcher, batch_size=50)

    def wait(seconds: float) -> None:  # the reindex's waits pass on the fetcher's clock
        now[0] += seconds

    # And a copy after which a row changes, fetched by that fetcher (a change arriving once the copy read it)
    def copy_then_change(job: BackfillJob, **options: Any) -> Any:
        copied = copy_runners(h, connections, 1)[0](job, **options)
        h.execute("UPDATE posts SET title = 'changed after the copy' WHERE id = 7")
        fetcher.apply([change(7)])
        return copied

    # When posts is reindexed
    result = reindexer(h, sleep=wait).run("posts", [copy_then_change], verify_attempts=1)

    # Then the change reached the new generation: the copy started only once the fetcher's cached write set
    # had expired (without the wait it writes the old generation alone, and the swap is refused for drift)
    assert result.status == "swapped", result.drift
    new = h.opensearch.get(index=result.new, id="7")["_source"]
    assert new["title"] == "changed after the copy"


def test_a_field_type_change_is_detected_then_applied_and_a_rollback_keeps_the_old_generation_current(
    harness: Harness, connections: Connections
) -> None:
    h = harness
    posts = h.mapping("posts")
    insert_posts(h, 300)
    run_backfill(h.conn, BackfillJob("posts"), live_fetcher(h, connections), batch_size=300)
    # Given tables.json now maps `author` as a keyword (dynamic mapping made it text) and asks for 2 shards
    changed = replace(
        posts,
        opensearch=replace(
            posts.opensearch,
            index_mappings=json.dumps({"properties": {"author": {"type": "keyword"}}}),
            index_settings=json.dumps({"number_of_shards": 2}),
        ),
    )
    mappings = Mappings({**h.mappings.tables, "posts": changed})

    # When fanout check compares the live index
    drifts = [d.line() for d in index_drifts(h.opensearch, mappings)]

    # Then it names both differences and says to reindex
    assert any("field author" in d and "'text'" in d and "run fanout reindex posts" in d for d in drifts), drifts
    assert any("number_of_shards" in d and "run fanout reindex posts" in d for d in drifts), drifts

    # When the reindex runs with the new mapping
    result = reindexer(h, mappings).run("posts", copy_runners(h, connections, 1, mappings))

    # Then the new generation has the declared type and shards, and check has nothing left to say
    assert result.status == "swapped", result.drift
    (live,) = h.opensearch.indices.get_mapping(index=posts.opensearch.index).values()
    assert live["mappings"]["properties"]["author"] == {"type": "keyword"}
    assert index_drifts(h.opensearch, mappings) == []

    # When a row changes after the swap, then searches are rolled back
    h.execute("UPDATE posts SET title = 'after the swap' WHERE id = 3")
    live_fetcher(h, connections, mappings).apply([change(3)])
    rolled = reindexer(h, mappings).rollback("posts")

    # Then the alias is on the old generation, which kept receiving the live change, and reconcile is clean there
    assert rolled.status == "rolled-back" and alias_indices(h.opensearch, posts.opensearch.index) == (result.old,)
    assert h.opensearch.get(index=posts.opensearch.index, id="3")["_source"]["title"] == "after the swap"
    report = agrees(h)
    assert report.agrees, report.summary()

    # And --drop-old takes the generation searches do not use out of the write set before deleting it
    waited: list[float] = []
    dropped = reindexer(h, mappings, sleep=waited.append).drop_old("posts")
    assert dropped.dropped == [result.new] and waited and waited[0] >= settle_seconds(TTL)
    assert alias_indices(h.opensearch, write_set(posts.opensearch.index)) == (result.old,)
    assert not h.opensearch.indices.exists(index=result.new)


def test_a_concrete_index_from_before_aliases_moves_behind_one_without_a_gap(
    harness: Harness, connections: Connections
) -> None:
    h = harness
    alias = h.mapping("posts").opensearch.index
    # Given posts in a concrete index named as in tables.json (an older fanout made it)
    h.opensearch.indices.create(index=alias, body={"settings": {"index": {"gc_deletes": "1h"}}})
    insert_posts(h, 200)
    run_backfill(h.conn, BackfillJob("posts"), live_fetcher(h, connections), batch_size=200)
    h.opensearch.indices.refresh(index=alias)  # searchable before the searches start
    assert read_state(h.opensearch, alias).concrete

    # When it is reindexed while a search runs the whole time
    with Searches(h) as searches:
        result = reindexer(h).run("posts", copy_runners(h, connections, 1))

    # Then the concrete index was replaced by the alias in one call, and searches always found the posts
    assert result.status == "swapped", result.drift
    assert alias_indices(h.opensearch, alias) == (f"{alias}.g1",)
    assert searches.fewest == 200
    assert agrees(h).agrees


def test_a_reindex_killed_half_way_resumes_from_its_checkpoint(
    harness: Harness, local_aws: dict[str, str], opensearch_endpoint: str, tmp_path: Path, connections: Connections
) -> None:
    h = harness
    alias = h.mapping("posts").opensearch.index
    insert_posts(h, 1000)
    run_backfill(h.conn, BackfillJob("posts"), live_fetcher(h, connections), batch_size=500)
    env = {**os.environ, **cli_environment(h, local_aws, opensearch_endpoint, tmp_path)}
    command = [str(Path(sys.executable).parent / "fanout"), "reindex", "posts", "--batch-size", "25"]
    job = BackfillJob("posts", generation=f"{alias}.g2")
    # Given `fanout reindex posts` copying 25 rows a page at 250 rows/s
    process = subprocess.Popen(
        [*command, "--rate", "250", "--quiet"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        # When it is killed (SIGKILL) once it copied 100 rows
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "the reindex made no progress"
            point = load_checkpoint(h.conn, h.mapping("posts"), job.job_id)
            if point is not None and point.rows_done >= 100:
                break
            time.sleep(0.05)
    finally:
        process.kill()
        process.wait()
    killed = load_checkpoint(h.conn, h.mapping("posts"), job.job_id)
    assert killed is not None and killed.status == "running" and 100 <= killed.rows_done < 1000
    assert alias_indices(h.opensearch, alias) == (f"{alias}.g1",)  # searches never left the old generation

    # And the same command runs again
    again = subprocess.run([*command, "--json"], env=env, capture_output=True, text=True, timeout=300)

    # Then it continues the same generation from the last completed page, verifies and swaps: exit 0
    assert again.returncode == 0, again.stderr + again.stdout
    result = json.loads(again.stdout)
    assert (result["status"], result["new"]) == ("swapped", f"{alias}.g2")
    (part,) = result["copy"]["ranges"]
    assert part["resumed_from"] == list(killed.last_key or ())
    assert part["rows_this_run"] == 1000 - killed.rows_done
    assert alias_indices(h.opensearch, alias) == (f"{alias}.g2",)
    assert agrees(h).agrees


def test_a_reindex_refuses_to_swap_when_the_new_generation_differs_from_the_source_and_says_what(
    harness: Harness, connections: Connections
) -> None:
    h = harness
    alias = h.mapping("posts").opensearch.index
    insert_posts(h, 40)
    run_backfill(h.conn, BackfillJob("posts"), live_fetcher(h, connections), batch_size=40)

    # Given a copy that loses a document (as a bug, or an operator's hand, would)
    def lossy_copy(job: BackfillJob, **options: Any) -> Any:
        copied = copy_runners(h, connections, 1)[0](job, **options)
        h.opensearch.delete(index=job.generation, id="13", refresh=True)
        return copied

    # When the reindex verifies the new generation
    result = reindexer(h, sleep=lambda _: None).run("posts", [lossy_copy], verify_attempts=2)

    # Then it does not swap, and it names the drift, its kind and the key
    assert result.status == "drift" and not result.clean
    assert result.drift == [f"posts in {alias}.g2: 1 missing (e.g. keys [[13]])"]
    assert alias_indices(h.opensearch, alias) == (f"{alias}.g1",)


def test_composed_documents_are_rebuilt_in_the_new_generation_with_their_live_changes(
    harness: Harness, connections: Connections
) -> None:
    h = harness
    articles = h.mapping("articles")
    # Given composed articles (author, comments, tags), replicated
    h.execute("INSERT INTO authors (id, name) VALUES (1, 'Ann')")
    h.execute(
        "INSERT INTO articles (id, title, body, status, author_id) VALUES "
        "(1, 'one', 'b', 'published', 1), (2, 'two', 'b', 'published', 1), (3, 'three', 'b', 'draft', 1)"
    )
    h.execute("INSERT INTO comments (id, article_id, commenter, body) VALUES (1, 1, 'c', 'first'), (2, 2, 'c', 'x')")
    h.execute("INSERT INTO tags (id, name) VALUES (1, 'red')")
    h.execute("INSERT INTO article_tags VALUES (1, 1)")
    live = live_fetcher(h, connections)
    run_backfill(h.conn, BackfillJob("articles"), live, batch_size=2)

    # When articles is reindexed and a comment is edited once the copy has read its article
    def copy_then_edit(job: BackfillJob, **options: Any) -> Any:
        copied = copy_runners(h, connections, 1)[0](job, **options)
        h.execute("UPDATE comments SET body = 'edited' WHERE id = 1")
        live.apply([Change("articles", (("id", 1),), "update", int(time.time() * 1e6))])
        return copied

    result = reindexer(h).run("articles", [copy_then_edit], batch_size=2)

    # Then searches use the new generation, whose documents are composed and current; reconcile agrees
    assert result.status == "swapped", result.drift
    h.opensearch.indices.refresh(index=articles.opensearch.index)
    doc = h.opensearch.get(index=articles.opensearch.index, id="1")["_source"]
    assert doc["author"] == {"id": 1, "name": "Ann"} and doc["tags"] == ["red"]
    assert [c["body"] for c in doc["comments"]] == ["edited"]
    assert not h.opensearch.exists(index=articles.opensearch.index, id="3")
    report = agrees(h, "articles")
    assert report.agrees, report.summary()


def test_steps_interrupted_between_their_two_calls_are_finished_by_the_same_command(
    harness: Harness, connections: Connections
) -> None:
    h = harness
    alias = h.mapping("posts").opensearch.index
    insert_posts(h, 30)
    run_backfill(h.conn, BackfillJob("posts"), live_fetcher(h, connections), batch_size=30)
    # Given a reindex killed after it created the next generation, before it joined the write set
    h.opensearch.indices.create(index=f"{alias}.g2", body={"settings": {"index": {"gc_deletes": "1h"}}})

    # When the reindex runs again, then it takes that generation instead of making a third
    result = reindexer(h, sleep=lambda _: None).run("posts", copy_runners(h, connections, 1))
    assert (result.status, result.new) == ("swapped", f"{alias}.g2")
    assert not h.opensearch.indices.exists(index=f"{alias}.g3")

    # Given a drop killed after it took the old generation out of the write set, before it deleted it
    h.opensearch.indices.update_aliases(
        body={"actions": [{"remove": {"index": f"{alias}.g1", "alias": write_set(alias)}}]}
    )

    # When the drop runs again, then the old generation is deleted
    assert reindexer(h, sleep=lambda _: None).drop_old("posts").dropped == [f"{alias}.g1"]
    assert not h.opensearch.indices.exists(index=f"{alias}.g1")


@pytest.fixture
def maintenance(
    harness: Harness,
    connections: Connections,
    local_aws: dict[str, str],
    opensearch_endpoint: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Callable[[int], Any]]:
    """``maintenance(rows)``: ``rows`` posts backfilled into the first generation, and the maintenance function's
    dependencies over this harness (the caller closes them)."""
    from fanout.model.mapping import default_mappings
    from fanout.operations.maintenance import Maintenance

    def build(rows: int) -> Any:
        insert_posts(harness, rows)
        run_backfill(harness.conn, BackfillJob("posts"), live_fetcher(harness, connections), batch_size=rows)
        for name, value in cli_environment(harness, local_aws, opensearch_endpoint, tmp_path).items():
            monkeypatch.setenv(name, value)
        default_mappings.cache_clear()
        return Maintenance(source="maintenance")

    yield build
    default_mappings.cache_clear()


def test_the_maintenance_function_reindexes_across_invocations_from_the_same_checkpoints(
    harness: Harness, maintenance: Callable[[int], Any]
) -> None:
    from fanout.operations.maintenance import handle_event

    h = harness
    alias = h.mapping("posts").opensearch.index
    deps = maintenance(120)
    event = {"action": "reindex", "table": "posts", "batch_size": 50}
    again: list[dict[str, Any]] = []
    pages = iter([True, False])  # time for one page in the first invocation
    try:
        # When the function runs out of time after one page
        first = handle_event(event, lambda: deps, again.append, lambda: next(pages, False))
        # Then it stopped copying and invoked itself again with the same event
        assert first["status"] == "copying" and again == [event]
        assert first["copy"]["rows_done"] == 50
        # When that invocation runs, it resumes after the first page, verifies and swaps
        second = handle_event(again[0], lambda: deps, again.append, lambda: True)
    finally:
        deps.close()
    assert second["status"] == "swapped", second
    assert second["copy"]["ranges"][0]["resumed_from"] == [50]
    assert alias_indices(h.opensearch, alias) == (f"{alias}.g2",)


def test_a_copy_that_ends_with_the_functions_time_leaves_verify_and_swap_to_the_next_invocation(
    harness: Harness, maintenance: Callable[[int], Any]
) -> None:
    from fanout.operations.maintenance import handle_event

    h = harness
    alias = h.mapping("posts").opensearch.index
    deps = maintenance(40)
    event = {"action": "reindex", "table": "posts", "batch_size": 50}
    again: list[dict[str, Any]] = []
    asks = iter([True])  # time for the copy's one page, none after it (a verify would be killed mid-way)
    try:
        # When the copy (one page) ends with the function's time
        first = handle_event(event, lambda: deps, again.append, lambda: next(asks, False))
        # Then it neither verified nor swapped, and invoked itself again
        assert first["status"] == "copying" and first["copy"]["rows_done"] == 40 and again == [event]
        assert alias_indices(h.opensearch, alias) == (f"{alias}.g1",)
        # And the next invocation verifies and swaps
        second = handle_event(again[0], lambda: deps, again.append, lambda: True)
    finally:
        deps.close()
    assert second["status"] == "swapped", second
