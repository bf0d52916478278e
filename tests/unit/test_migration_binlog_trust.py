"""A trigger refused for want of log_bin_trust_function_creators (errors 1418/1419) is reported as the cluster
parameter to set, in one line, and not recorded as a failed migration (no database: an in-memory server)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pymysql
import pytest

from fanout.capture import post_deploy
from fanout.capture.migration_scripts import MigrationError
from fanout.capture.migrations import HISTORY_TABLE, MigrationRunner, TriggersNotTrusted, binlog_trust_refusal

ARN = "arn:aws:lambda:eu-west-1:123456789012:function:fanout-parser-dev"
ER_1419 = (
    "You do not have the SUPER privilege and binary logging is enabled "
    "(you *might* want to use the less safe log_bin_trust_function_creators variable)"
)
ER_1418 = (
    "This function has none of DETERMINISTIC, NO SQL, or READS SQL DATA in its declaration and binary logging is "
    "enabled (you *might* want to use the less safe log_bin_trust_function_creators variable)"
)
MIGRATION = """\
CREATE TABLE IF NOT EXISTS fanout_change_log (id BIGINT PRIMARY KEY);
DROP TRIGGER IF EXISTS fanout_items_after_insert;
CREATE TRIGGER fanout_items_after_insert AFTER INSERT ON items FOR EACH ROW
BEGIN
    INSERT INTO fanout_change_log (id) VALUES (NEW.id);
END;
"""


@dataclass
class Server:
    """What the runner sees of MySQL 8 with binary logging on, as a user without SUPER: while ``trusting`` is
    False (log_bin_trust_function_creators = 0), CREATE TRIGGER fails as the server fails it; every other
    statement is remembered. ``refusal`` is the error it raises."""

    trusting: bool = False
    refusal: tuple[int, str] = (1419, ER_1419)
    executed: list[str] = field(default_factory=list)
    history: list[tuple[Any, ...]] = field(default_factory=list)
    history_exists: bool = False

    def connect(self) -> Connection:
        return Connection(self)


@dataclass
class Connection:
    server: Server

    def autocommit(self, on: bool) -> None:
        pass

    def cursor(self) -> Cursor:
        return Cursor(self.server)

    def close(self) -> None:
        pass


@dataclass
class Cursor:
    server: Server
    rows: list[tuple[Any, ...]] = field(default_factory=list)

    def __enter__(self) -> Cursor:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def execute(self, sql: str, args: Any = None) -> None:
        server, self.rows = self.server, []
        if sql == "SELECT DATABASE()":
            self.rows = [("app",)]
        elif sql.startswith("SELECT GET_LOCK"):
            self.rows = [(1,)]
        elif sql.startswith("DO RELEASE_LOCK"):
            pass
        elif sql.startswith("SELECT 1 FROM information_schema.TABLES"):
            self.rows = [(1,)] if server.history_exists else []
        elif f"`{HISTORY_TABLE}`" in sql and sql.startswith("CREATE TABLE"):
            server.history_exists = True
        elif f"`{HISTORY_TABLE}`" in sql and sql.startswith("SELECT"):
            self.rows = [(v, d, c, None, ok, e) for v, d, c, ok, e in server.history]
        elif f"`{HISTORY_TABLE}`" in sql and sql.startswith("INSERT"):
            version, description, checksum, _duration, _by, success, error = args
            server.history.append((version, description, checksum, success, error))
        elif sql.startswith("CREATE TRIGGER") and not server.trusting:
            raise pymysql.err.OperationalError(*server.refusal)
        else:
            server.executed.append(sql.split("\n", 1)[0])

    def fetchone(self) -> tuple[Any, ...] | None:
        return self.rows[0] if self.rows else None

    def fetchall(self) -> list[tuple[Any, ...]]:
        return self.rows


def runner(server: Server, directory: Path) -> MigrationRunner:
    return MigrationRunner(server.connect, directory, {"parser_function_arn": ARN}, applied_by="test")  # type: ignore[arg-type]


@pytest.fixture
def migrations(tmp_path: Path) -> Path:
    (tmp_path / "V001__items_capture.sql").write_text(MIGRATION, encoding="utf-8")
    return tmp_path


@pytest.mark.parametrize("refusal", [(1419, ER_1419), (1418, ER_1418)], ids=["1419", "1418"])
def test_a_refused_trigger_names_the_cluster_parameter_in_one_line(migrations: Path, refusal: tuple[int, str]) -> None:
    # Given a server with binary logging on that does not trust trigger creators
    server = Server(refusal=refusal)

    # When the migrations run
    with pytest.raises(TriggersNotTrusted) as caught:
        runner(server, migrations).migrate()

    # Then the error says what to set and where, on one line, and keeps the server's own error
    message = str(caught.value)
    assert message.startswith(
        "the database refused to create a trigger: set log_bin_trust_function_creators = 1 in the DB cluster "
        "parameter group"
    )
    assert "\n" not in message
    assert f"(migration V1 (V001__items_capture.sql), statement 3 of 3: MySQL error {refusal[0]}: " in message
    assert isinstance(caught.value, MigrationError)  # callers that handle migration errors handle this one


def test_a_refused_trigger_is_not_recorded_so_the_same_file_runs_once_the_parameter_is_on(migrations: Path) -> None:
    # Given a run refused for want of the parameter
    server = Server()
    with pytest.raises(TriggersNotTrusted):
        runner(server, migrations).migrate()
    assert server.history == []

    # When the parameter is turned on and the migrations run again, with nothing repaired
    server.trusting = True
    report = runner(server, migrations).migrate()

    # Then the migration is applied, whole
    assert report.applied == [1]
    assert [(v, ok) for v, _, _, ok, _ in server.history] == [(1, 1)]
    assert server.executed[-1].startswith("CREATE TRIGGER fanout_items_after_insert")


def test_any_other_error_is_still_recorded_as_a_failed_migration(migrations: Path) -> None:
    # Given a server refusing the trigger for another reason (the user lacks the TRIGGER privilege)
    server = Server(refusal=(1142, "TRIGGER command denied to user 'fanout'@'localhost' for table 'items'"))

    # When / Then the usual failure: recorded, and not mistaken for the parameter
    with pytest.raises(MigrationError) as caught:
        runner(server, migrations).migrate()
    assert not isinstance(caught.value, TriggersNotTrusted)
    assert "log_bin_trust_function_creators" not in str(caught.value)
    assert [(v, ok) for v, _, _, ok, _ in server.history] == [(1, 0)]


def test_only_the_two_binary_log_errors_are_taken_for_the_parameter() -> None:
    assert binlog_trust_refusal(pymysql.err.OperationalError(1419, ER_1419))
    assert binlog_trust_refusal(pymysql.err.OperationalError(1418, ER_1418))
    assert not binlog_trust_refusal(pymysql.err.OperationalError(1227, "Access denied; you need SUPER"))
    assert not binlog_trust_refusal(pymysql.err.ProgrammingError(1146, "Table 'app.items' doesn't exist"))
    assert not binlog_trust_refusal(RuntimeError(1419))


@dataclass
class Context:
    log_stream_name: str = "2026/01/01/[$LATEST]abc"
    aws_request_id: str = "request-1"

    def get_remaining_time_in_millis(self) -> int:
        return 300_000


def test_the_hook_answers_cloudformation_failed_with_the_parameter_to_set(migrations: Path) -> None:
    # Given the hook's real runner over a server that does not trust trigger creators
    server = Server()
    sent: list[dict[str, Any]] = []
    event = {
        "RequestType": "Create",
        "ResponseURL": "https://cloudformation-custom-resource-response.example/x",
        "StackId": "arn:aws:cloudformation:eu-west-1:123456789012:stack/fanout/1",
        "RequestId": "r-1",
        "LogicalResourceId": "DatabaseMigrations",
        "ResourceProperties": {"ParserFunctionArn": ARN, "DatabaseName": "app"},
    }

    # When CloudFormation asks for the migrations
    post_deploy.process_event(
        event,
        Context(),
        migrations_dir=migrations,
        make_migrator=lambda d, p, by: MigrationRunner(server.connect, d, p, applied_by=by),  # type: ignore[arg-type]
        send=lambda url, body: sent.append(json.loads(body)),
    )

    # Then it is answered FAILED, the reason naming the parameter, then the log stream
    [answer] = sent
    assert answer["Status"] == "FAILED"
    assert answer["Reason"].startswith("the database refused to create a trigger: set log_bin_trust_function_creators")
    assert "MySQL error 1419" in answer["Reason"]
    assert answer["Reason"].endswith("(log stream: 2026/01/01/[$LATEST]abc)")
