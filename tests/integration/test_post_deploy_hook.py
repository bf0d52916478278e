"""The post-deploy hook answering CloudFormation: a local HTTP server plays the pre-signed URL."""

from __future__ import annotations

import json
import re
import threading
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pymysql
import pytest

from fanout.capture import post_deploy as hook
from fanout.capture.migration_scripts import MigrationError, load_migrations
from fanout.capture.migrations import HISTORY_TABLE, MigrationReport
from fanout.config import DatabaseSettings
from fanout.source.connection import connect
from fanout_cli.main import main
from tests.support.files import ROOT
from tests.support.integration import lambda_async_bridge, lambda_async_calls, parser_arn
from tests.support.schemas import create_user, drop_database, drop_user

ARN = "arn:aws:lambda:eu-west-1:123456789012:function:fanout-parser-test"
LOG_STREAM = "2026/01/01/[$LATEST]0123456789abcdef"
MIGRATIONS = ROOT / "db" / "migrations"  # the hook ships them beside itself (db/hook.py)

POSTS_TABLE = "CREATE TABLE posts (id INT PRIMARY KEY, title VARCHAR(100) NOT NULL);"
POSTS_TRIGGERS = """\
DROP TRIGGER IF EXISTS fanout_posts_after_insert;
CREATE TRIGGER fanout_posts_after_insert AFTER INSERT ON posts FOR EACH ROW
BEGIN
    SELECT lambda_async(
        '${parser_function_arn}', JSON_OBJECT('v', 1, 'action', 'insert', 'pk', JSON_OBJECT('id', NEW.id))
    ) INTO @fanout_invoke_result;
END;
DROP TRIGGER IF EXISTS fanout_posts_after_delete;
CREATE TRIGGER fanout_posts_after_delete AFTER DELETE ON posts FOR EACH ROW
BEGIN
    SELECT lambda_async(
        '${parser_function_arn}', JSON_OBJECT('v', 1, 'action', 'delete', 'pk', JSON_OBJECT('id', OLD.id))
    ) INTO @fanout_invoke_result;
END;
"""


# --------------------------------------------------------------------------- the response URL


@dataclass
class CapturedPut:
    path: str
    headers: Mapping[str, str]
    body: dict[str, Any]
    raw_length: int


@dataclass
class ResponseServer:
    """Records every PUT; answers with the queued status codes, then 200."""

    url: str
    puts: list[CapturedPut] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)


@pytest.fixture
def response_server() -> Iterator[ResponseServer]:
    server_state = ResponseServer(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_PUT(self) -> None:
            raw = self.rfile.read(int(self.headers["Content-Length"]))
            server_state.puts.append(CapturedPut(self.path, dict(self.headers), json.loads(raw), len(raw)))
            status = server_state.statuses.pop(0) if server_state.statuses else 200
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    server_state.url = f"http://127.0.0.1:{server.server_address[1]}/cfn-response?X-Amz-Signature=test"
    try:
        yield server_state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


# --------------------------------------------------------------------------- Lambda and CloudFormation stand-ins


@dataclass
class FakeContext:
    remaining_ms: int = 300_000
    log_stream_name: str = LOG_STREAM
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


def cfn_event(request_type: str, url: str, properties: Mapping[str, Any], physical_id: str = "") -> dict[str, Any]:
    event: dict[str, Any] = {
        "RequestType": request_type,
        "ServiceToken": "arn:aws:lambda:eu-west-1:123456789012:function:fanout-migrations",
        "ResponseURL": url,
        "StackId": "arn:aws:cloudformation:eu-west-1:123456789012:stack/fanout-test/" + str(uuid.uuid4()),
        "RequestId": str(uuid.uuid4()),
        "LogicalResourceId": "DatabaseMigrations",
        "ResourceType": "Custom::DatabaseMigrations",
        "ResourceProperties": {"ServiceToken": "arn:aws:lambda:...", **properties},
    }
    if physical_id:
        event["PhysicalResourceId"] = physical_id
    return event


class FakeMigrator:
    """Stands in for MigrationRunner; can fail, or hang until released."""

    def __init__(self, report: MigrationReport | None = None, error: Exception | None = None) -> None:
        self.report = report or MigrationReport(dry_run=False, applied=[1], current_version=1)
        self.error = error
        self.hang = threading.Event()
        self.hang_s = 0.0
        self.created_with: list[tuple[Path, Mapping[str, str], str]] = []

    def factory(self, directory: Path, placeholders: Mapping[str, str], applied_by: str) -> FakeMigrator:
        self.created_with.append((directory, dict(placeholders), applied_by))
        return self

    def migrate(self, dry_run: bool = False) -> MigrationReport:
        self.hang.wait(self.hang_s)
        if self.error is not None:
            raise self.error
        return self.report

    def uninstall(self, trigger_prefix: str = "fanout_") -> list[str]:
        return []


# --------------------------------------------------------------------------- database


@pytest.fixture
def database(mysql: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Iterator[DatabaseSettings]:
    """A fresh, empty schema on the project's MySQL, named in the environment the way the function's configuration
    names it."""
    name = f"fanout_t_{uuid.uuid4().hex[:8]}"
    admin = pymysql.connect(**mysql, autocommit=True)
    with admin.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{name}`")
    settings = DatabaseSettings(
        host=mysql["host"], port=mysql["port"], name=name, user=mysql["user"], password=mysql["password"]
    )
    use_database(monkeypatch, settings)
    try:
        yield settings
    finally:
        drop_database(admin, name)
        admin.close()


def use_database(monkeypatch: pytest.MonkeyPatch, settings: DatabaseSettings) -> None:
    """Name ``settings`` in the environment, as the hook's function reads its database (no secret)."""
    for variable, value in {
        "DB_HOST": settings.host,
        "DB_PORT": str(settings.port),
        "DB_USER": settings.user,
        "DB_PASSWORD": settings.password,
        "DB_NAME": settings.name,
    }.items():
        monkeypatch.setenv(variable, value)
    monkeypatch.delenv("DB_SECRET_ARN", raising=False)


@pytest.fixture
def migrations_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "migrations"
    directory.mkdir()
    (directory / "V001__posts_table.sql").write_text(POSTS_TABLE, encoding="utf-8")
    (directory / "V002__posts_capture_triggers.sql").write_text(POSTS_TRIGGERS, encoding="utf-8")
    return directory


def triggers(settings: DatabaseSettings) -> list[str]:
    conn = connect(settings)
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT TRIGGER_NAME, ACTION_STATEMENT FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = %s"
                " ORDER BY TRIGGER_NAME",
                (settings.name,),
            )
            rows = cur.fetchall()
    finally:
        conn.close()
    assert all(ARN in str(body) for _, body in rows)
    return [str(name) for name, _ in rows]


def history_exists(settings: DatabaseSettings) -> bool:
    conn = connect(settings)
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT 1 FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s",
                (settings.name, HISTORY_TABLE),
            )
            return cur.fetchone() is not None
    finally:
        conn.close()


# --------------------------------------------------------------------------- tests


def test_create_applies_the_migrations_and_answers_success(
    database: DatabaseSettings, migrations_dir: Path, response_server: ResponseServer
) -> None:
    # Given a Create request for the stack
    event = cfn_event("Create", response_server.url, {"ParserFunctionArn": ARN, "DatabaseName": database.name})

    # When
    hook.process_event(event, FakeContext(), migrations_dir=migrations_dir)

    # Then exactly one answer arrived, shaped as CloudFormation expects
    [put] = response_server.puts
    assert put.body == {
        "Status": "SUCCESS",
        "Reason": "",
        "PhysicalResourceId": f"fanout-migrations-{database.name}",
        "StackId": event["StackId"],
        "RequestId": event["RequestId"],
        "LogicalResourceId": "DatabaseMigrations",
        "NoEcho": False,
        "Data": {"AppliedVersions": "1,2", "CurrentVersion": "2"},
    }
    assert put.path == "/cfn-response?X-Amz-Signature=test"
    assert put.headers["Content-Type"] == ""
    assert int(put.headers["Content-Length"]) == put.raw_length

    # And the triggers exist, with the parser's ARN in their bodies
    assert triggers(database) == ["fanout_posts_after_delete", "fanout_posts_after_insert"]


def test_create_records_the_stack_as_the_one_who_applied(
    database: DatabaseSettings, migrations_dir: Path, response_server: ResponseServer
) -> None:
    event = cfn_event("Create", response_server.url, {"ParserFunctionArn": ARN})

    hook.process_event(event, FakeContext(), migrations_dir=migrations_dir)

    conn = connect(database)
    try:
        with conn.cursor() as cur:
            cur.execute(f"SELECT DISTINCT applied_by FROM {HISTORY_TABLE}")
            assert cur.fetchall() == ((f"cloudformation:{event['StackId']}",),)
    finally:
        conn.close()


def test_update_runs_new_migrations_and_keeps_the_physical_resource_id(
    database: DatabaseSettings, migrations_dir: Path, response_server: ResponseServer
) -> None:
    # Given a stack created earlier, then a new migration shipped
    properties = {"ParserFunctionArn": ARN, "DatabaseName": database.name}
    hook.process_event(
        cfn_event("Create", response_server.url, properties), FakeContext(), migrations_dir=migrations_dir
    )
    (migrations_dir / "V003__posts_index.sql").write_text("CREATE INDEX posts_title ON posts (title);")

    # When an Update arrives carrying the id CloudFormation knows the resource by
    event = cfn_event("Update", response_server.url, properties, physical_id="fanout-migrations-from-before")
    hook.process_event(event, FakeContext(), migrations_dir=migrations_dir)

    # Then
    answer = response_server.puts[-1].body
    assert len(response_server.puts) == 2
    assert answer["Status"] == "SUCCESS"
    assert answer["PhysicalResourceId"] == "fanout-migrations-from-before"
    assert answer["Data"] == {"AppliedVersions": "3", "CurrentVersion": "3"}


def test_update_with_nothing_new_applies_nothing(
    database: DatabaseSettings, migrations_dir: Path, response_server: ResponseServer
) -> None:
    properties = {"ParserFunctionArn": ARN}
    hook.process_event(
        cfn_event("Create", response_server.url, properties), FakeContext(), migrations_dir=migrations_dir
    )

    event = cfn_event("Update", response_server.url, properties, physical_id=f"fanout-migrations-{database.name}")
    hook.process_event(event, FakeContext(), migrations_dir=migrations_dir)

    assert response_server.puts[-1].body["Data"] == {"AppliedVersions": "", "CurrentVersion": "2"}


def test_delete_leaves_the_database_alone_by_default(
    database: DatabaseSettings,
    migrations_dir: Path,
    response_server: ResponseServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given an installed stack
    properties = {"ParserFunctionArn": ARN, "RemoveTriggersOnDelete": "false"}
    hook.process_event(
        cfn_event("Create", response_server.url, properties), FakeContext(), migrations_dir=migrations_dir
    )
    physical_id = response_server.puts[0].body["PhysicalResourceId"]

    # When it is deleted, even with no database configuration at all (the database is never touched)
    monkeypatch.delenv("DB_HOST")
    event = cfn_event("Delete", response_server.url, properties, physical_id=physical_id)
    hook.process_event(event, FakeContext(), migrations_dir=migrations_dir)

    # Then
    answer = response_server.puts[-1].body
    assert (answer["Status"], answer["PhysicalResourceId"], answer["Data"]) == ("SUCCESS", physical_id, {})
    assert triggers(database) == ["fanout_posts_after_delete", "fanout_posts_after_insert"]
    assert history_exists(database)


def test_delete_with_remove_triggers_drops_the_fanout_triggers(
    database: DatabaseSettings, migrations_dir: Path, response_server: ResponseServer
) -> None:
    # Given an installed stack that asks for its triggers to go with it
    properties = {"ParserFunctionArn": ARN, "RemoveTriggersOnDelete": "true"}
    hook.process_event(
        cfn_event("Create", response_server.url, properties), FakeContext(), migrations_dir=migrations_dir
    )

    # When
    event = cfn_event("Delete", response_server.url, properties, physical_id=f"fanout-migrations-{database.name}")
    hook.process_event(event, FakeContext(), migrations_dir=migrations_dir)

    # Then the triggers and the history are gone, so a re-install applies everything again
    answer = response_server.puts[-1].body
    assert answer["Status"] == "SUCCESS"
    assert answer["Data"] == {"RemovedTriggers": "fanout_posts_after_delete,fanout_posts_after_insert"}
    assert triggers(database) == []
    assert not history_exists(database)


def test_a_failing_migration_answers_failed_with_the_reason(
    database: DatabaseSettings, migrations_dir: Path, response_server: ResponseServer
) -> None:
    # Given a migration that fails on the server
    (migrations_dir / "V003__broken.sql").write_text("INSERT INTO no_such_table VALUES (1);")
    event = cfn_event("Create", response_server.url, {"ParserFunctionArn": ARN})

    # When
    hook.process_event(event, FakeContext(), migrations_dir=migrations_dir)

    # Then the reason carries the error and where to read the logs
    [put] = response_server.puts
    assert put.body["Status"] == "FAILED"
    assert put.body["PhysicalResourceId"] == f"fanout-migrations-{database.name}"
    reason = put.body["Reason"]
    assert "migration V3 (V003__broken.sql) failed: statement 1 of 1 failed: MySQL error 1146" in reason
    assert reason.endswith(f"(log stream: {LOG_STREAM})")


def test_a_trigger_that_names_a_missing_column_is_refused_before_anything_runs(
    database: DatabaseSettings, migrations_dir: Path, response_server: ResponseServer
) -> None:
    # Given the posts table and its triggers, deployed
    hook.process_event(cfn_event("Create", response_server.url, {"ParserFunctionArn": ARN}), FakeContext(),
                       migrations_dir=migrations_dir)  # fmt: skip
    installed = triggers(database)
    # And a migration whose trigger joins posts and reads a column it does not have (as a cascade trigger
    # generated before a rename would): MySQL resolves such a column only when the trigger fires
    (migrations_dir / "V003__stale_trigger.sql").write_text(
        "CREATE TABLE IF NOT EXISTS kept (id INT PRIMARY KEY);\n\n"
        "CREATE TRIGGER fanout_posts_cascade_before_delete_v003 BEFORE DELETE ON `posts` FOR EACH ROW\n"
        "BEGIN\n"
        "    INSERT INTO kept (id) SELECT fanout_d1.`post_id` FROM `posts` AS fanout_d1\n"
        "    WHERE fanout_d1.`id` = OLD.`id`;\n"
        "END;\n"
    )

    # When the hook runs for the update
    hook.process_event(cfn_event("Update", response_server.url, {"ParserFunctionArn": ARN}, "fanout-migrations-x"),
                       FakeContext(), migrations_dir=migrations_dir)  # fmt: skip

    # Then CloudFormation is told why, naming the trigger and the column
    put = response_server.puts[-1]
    assert put.body["Status"] == "FAILED"
    assert "V003 trigger fanout_posts_cascade_before_delete_v003 reads posts.post_id" in put.body["Reason"]
    # And nothing of it ran
    assert triggers(database) == installed
    conn = connect(database)
    try:
        with conn.cursor() as cur:
            cur.execute("SHOW TABLES LIKE 'kept'")
            assert cur.fetchall() == ()
    finally:
        conn.close()


def test_a_missing_parser_arn_answers_failed(
    database: DatabaseSettings, migrations_dir: Path, response_server: ResponseServer
) -> None:
    event = cfn_event("Create", response_server.url, {})

    hook.process_event(event, FakeContext(), migrations_dir=migrations_dir)

    [put] = response_server.puts
    assert put.body["Status"] == "FAILED"
    assert "ParserFunctionArn is required" in put.body["Reason"]


def test_extra_placeholders_are_passed_through(response_server: ResponseServer, tmp_path: Path) -> None:
    # Given a Placeholders property beside the parser's ARN
    migrator = FakeMigrator()
    properties = {"ParserFunctionArn": ARN, "DatabaseName": "app", "Placeholders": {"archive_schema": "archive"}}
    event = cfn_event("Create", response_server.url, properties)

    # When
    hook.process_event(event, FakeContext(), migrations_dir=tmp_path, make_migrator=migrator.factory)

    # Then
    assert migrator.created_with == [
        (tmp_path, {"archive_schema": "archive", "parser_function_arn": ARN}, f"cloudformation:{event['StackId']}")
    ]
    assert response_server.puts[0].body["Data"] == {"AppliedVersions": "1", "CurrentVersion": "1"}


def test_a_long_error_is_cut_to_keep_the_response_under_4096_bytes(
    response_server: ResponseServer, tmp_path: Path
) -> None:
    # Given a failure with an enormous message, some of it needing JSON escapes
    migrator = FakeMigrator(error=MigrationError('boom "quoted" \u00e9 ' * 2000))
    event = cfn_event("Create", response_server.url, {"ParserFunctionArn": ARN, "DatabaseName": "app"})

    # When
    hook.process_event(event, FakeContext(), migrations_dir=tmp_path, make_migrator=migrator.factory)

    # Then the body fits, starts with the error and still names the log stream
    [put] = response_server.puts
    assert 3800 < put.raw_length <= 4096
    assert put.body["Status"] == "FAILED"
    assert put.body["Reason"].startswith('boom "quoted" \u00e9 boom')
    assert put.body["Reason"].endswith(f"... (log stream: {LOG_STREAM})")


def test_a_migrator_that_hangs_past_the_deadline_answers_timed_out_exactly_once(
    response_server: ResponseServer, tmp_path: Path
) -> None:
    # Given 3.5 s left, so the watchdog answers after 0.5 s, and a migration that takes 1.5 s
    migrator = FakeMigrator()
    migrator.hang_s = 1.5
    event = cfn_event("Create", response_server.url, {"ParserFunctionArn": ARN, "DatabaseName": "app"})

    # When
    sent = hook.process_event(
        event, FakeContext(remaining_ms=3500), migrations_dir=tmp_path, make_migrator=migrator.factory
    )

    # Then one answer only: the timeout, even though the migration finished afterwards
    [put] = response_server.puts
    assert put.body["Status"] == "FAILED"
    assert put.body["Reason"].startswith("timed out")
    assert put.body["PhysicalResourceId"] == "fanout-migrations-app"
    assert sent == put.body


def test_a_migrator_that_finishes_in_time_is_not_answered_twice(
    response_server: ResponseServer, tmp_path: Path
) -> None:
    # Given a watchdog due 0.5 s from now and a migration that is quicker
    migrator = FakeMigrator()
    migrator.hang_s = 0.1
    event = cfn_event("Create", response_server.url, {"ParserFunctionArn": ARN, "DatabaseName": "app"})

    # When, and after the watchdog would have fired
    hook.process_event(event, FakeContext(remaining_ms=3500), migrations_dir=tmp_path, make_migrator=migrator.factory)
    threading.Event().wait(0.6)

    # Then
    [put] = response_server.puts
    assert put.body["Status"] == "SUCCESS"


def test_the_put_is_retried_after_a_server_error(response_server: ResponseServer) -> None:
    # Given a response URL that fails once with 503
    response_server.statuses = [503]

    # When
    hook.put_response(response_server.url, b'{"Status": "SUCCESS"}', backoff_s=0.01)

    # Then it was delivered on the second attempt
    assert [p.body for p in response_server.puts] == [{"Status": "SUCCESS"}] * 2


def test_the_put_is_not_retried_when_the_url_is_refused(response_server: ResponseServer) -> None:
    # Given an expired pre-signed URL (S3 answers 403)
    response_server.statuses = [403]

    # When / Then
    with pytest.raises(hook.ResponseDeliveryError, match="HTTP 403"):
        hook.put_response(response_server.url, b"{}", backoff_s=0.01)
    assert len(response_server.puts) == 1


def test_an_unreachable_url_gives_up_after_the_retries() -> None:
    # Given a port nothing listens on
    with ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler) as probe:
        port = probe.server_address[1]

    # When / Then
    with pytest.raises(hook.ResponseDeliveryError, match="after 3 attempts"):
        hook.put_response(f"http://127.0.0.1:{port}/x", b"{}", backoff_s=0.01, timeout_s=1)


# --------------------------------------------------------------------------- Aurora's privilege model
#
# Aurora's master user has no SUPER; with binary logging on, MySQL lets an account without SUPER create
# triggers only if log_bin_trust_function_creators is 1 (a cluster parameter on Aurora). The project's MySQL
# runs with binary logging on and the parameter at 1, as the deploy docs ask; these tests turn it off and
# restore it.


def documented_privileges() -> str:
    """The privileges docs/security.md grants fanout's database user on the application's schema."""
    text = (ROOT / "docs" / "security.md").read_text(encoding="utf-8")
    [privileges] = re.findall(r"^GRANT ([A-Z_, ]+) ON `app`\.\* TO 'fanout'@'%';$", text, re.MULTILINE)
    return str(privileges)


@pytest.fixture
def least_privileged(
    mysql: dict[str, Any], fresh_database: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[DatabaseSettings]:
    """An account holding exactly the documented privileges on a fresh demo schema, and nothing global, named in
    the hook's environment; dropped afterwards."""
    name, password = f"fanout_u_{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    admin = pymysql.connect(**mysql, autocommit=True)
    try:
        create_user(admin, name, password, documented_privileges(), fresh_database)
        with admin.cursor() as cur:
            cur.execute("SHOW GRANTS FOR %s@'%%'", (name,))
            global_grant = cur.fetchone()
        assert global_grant == (f"GRANT USAGE ON *.* TO `{name}`@`%`",)  # nothing global: no SUPER, no *_ADMIN
        settings = DatabaseSettings(
            host=mysql["host"], port=mysql["port"], name=fresh_database, user=name, password=password
        )
        use_database(monkeypatch, settings)
        yield settings
    finally:
        drop_user(admin, name)
        admin.close()


@contextmanager
def trust_function_creators(mysql: dict[str, Any], on: bool) -> Iterator[None]:
    """Set log_bin_trust_function_creators for the server (as the cluster parameter does); back to 1 afterwards,
    the server's setting, which every other test relies on."""
    admin = pymysql.connect(**mysql, autocommit=True)
    try:
        with admin.cursor() as cur:
            cur.execute("SET GLOBAL log_bin_trust_function_creators = %s", (int(on),))
            cur.execute("SELECT @@GLOBAL.log_bin, @@GLOBAL.binlog_format, @@GLOBAL.log_bin_trust_function_creators")
            assert cur.fetchone() == (1, "ROW", int(on))  # binary logging really is on
        yield
    finally:
        with admin.cursor() as cur:
            cur.execute("SET GLOBAL log_bin_trust_function_creators = 1")
        admin.close()


def as_root(mysql: dict[str, Any], schema: str, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    conn = pymysql.connect(**mysql, database=schema, autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute(sql, args)
            return list(cur.fetchall())
    finally:
        conn.close()


def test_without_log_bin_trust_function_creators_the_hook_fails_naming_the_cluster_parameter_then_succeeds_once_set(
    mysql: dict[str, Any], least_privileged: DatabaseSettings, response_server: ResponseServer
) -> None:
    # Given the hook connecting as an account with only the documented privileges (no SUPER), binary logging on
    schema = least_privileged.name
    arn = parser_arn(schema)
    lambda_async_bridge().configure(arn, deliver=False)
    properties = {"ParserFunctionArn": arn, "DatabaseName": schema}

    # When CloudFormation creates the stack while log_bin_trust_function_creators is 0
    with trust_function_creators(mysql, on=False):
        hook.process_event(
            cfn_event("Create", response_server.url, properties), FakeContext(), migrations_dir=MIGRATIONS
        )

    # Then it is told FAILED, the reason naming the parameter to set and where, and the server's error
    [failed] = response_server.puts
    assert failed.body["Status"] == "FAILED"
    reason = failed.body["Reason"]
    assert reason.startswith(
        "the database refused to create a trigger: set log_bin_trust_function_creators = 1 in the DB cluster "
        "parameter group"
    )
    assert "MySQL error 1419: You do not have the SUPER privilege and binary logging is enabled" in reason
    assert "\n" not in reason
    assert (
        as_root(mysql, schema, "SELECT TRIGGER_NAME FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = %s", schema)
        == []
    )
    assert as_root(mysql, schema, f"SELECT COUNT(*) FROM {HISTORY_TABLE} WHERE success = 0") == [(0,)]

    # When the parameter is set and the stack deployed again, nothing repaired, the same account connecting
    hook.process_event(cfn_event("Create", response_server.url, properties), FakeContext(), migrations_dir=MIGRATIONS)

    # Then every migration is applied
    succeeded = response_server.puts[-1].body
    assert succeeded["Status"] == "SUCCESS", succeeded["Reason"]
    assert succeeded["Data"]["CurrentVersion"] == str(max(m.version for m in load_migrations(MIGRATIONS)))

    # And a write by the application (another account) is captured by the triggers that account defined
    as_root(mysql, schema, "INSERT INTO posts (id, title, body, author) VALUES (41, 'privileges', 'b', 'a')")
    [(payload,)] = as_root(mysql, schema, "SELECT payload FROM fanout_change_log")
    assert json.loads(payload)["pk"] == {"id": 41}
    conn = connect(least_privileged)
    try:
        assert [call["table"] for call in lambda_async_calls(conn)] == ["posts"]  # the statement's ring
    finally:
        conn.close()


def test_fanout_migrate_prints_the_cluster_parameter_to_set_on_one_line(
    mysql: dict[str, Any], least_privileged: DatabaseSettings, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given the same account and log_bin_trust_function_creators = 0
    arn = parser_arn(least_privileged.name)

    # When an operator runs the migrations from the command line
    with trust_function_creators(mysql, on=False):
        status = main(["migrate", "--dir", str(MIGRATIONS), "--parser-arn", arn])

    # Then it fails with the parameter to set, as one line
    assert status == 1
    err = capsys.readouterr().err
    assert err.startswith(
        "fanout migrate: the database refused to create a trigger: set log_bin_trust_function_creators = 1 in the "
        "DB cluster parameter group"
    )
    assert err.count("\n") == 1 and err.endswith("\n")
