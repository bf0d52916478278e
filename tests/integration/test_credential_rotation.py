"""A rotated database password is picked up without a restart: on a refused login the settings are re-read once."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pymysql
import pytest

from fanout.config import DatabaseSettings
from fanout.source.connection import ConnectionHolder


@pytest.fixture
def fetcher_user(mysql: dict[str, Any], fresh_database: str) -> Iterator[tuple[str, Any]]:
    """A database user of its own (unique name, dropped afterwards) and an admin connection."""
    name = f"fanout_rot_{uuid.uuid4().hex[:8]}"
    admin = pymysql.connect(**mysql, autocommit=True)
    with admin.cursor() as cur:
        cur.execute("CREATE USER %s@'%%' IDENTIFIED BY 'first-password'", (name,))
        cur.execute(f"GRANT SELECT ON `{fresh_database}`.* TO %s@'%%'", (name,))
    try:
        yield name, admin
    finally:
        with admin.cursor() as cur:
            cur.execute("DROP USER IF EXISTS %s@'%%'", (name,))
        admin.close()


def rotate(admin: Any, user: str, password: str) -> None:
    with admin.cursor() as cur:
        cur.execute("ALTER USER %s@'%%' IDENTIFIED BY %s", (user, password))


def test_a_rotated_password_is_read_again_and_the_next_login_succeeds(
    db_settings: DatabaseSettings, fetcher_user: tuple[str, Any]
) -> None:
    # Given a holder logged in with the first password, whose settings source (the secret) is then rotated
    user, admin = fetcher_user
    secret = {"password": "first-password"}
    reloads: list[str] = []

    def from_secret() -> DatabaseSettings:
        reloads.append(secret["password"])
        return replace(db_settings, user=user, password=secret["password"])

    holder = ConnectionHolder(from_secret(), reload=from_secret)
    holder.get()
    rotate(admin, user, "second-password")
    secret["password"] = "second-password"

    # When the connection is lost (a new execution environment, an idle timeout) and opened again
    holder.close()
    conn = holder.get()

    # Then the refused login made it re-read the secret, once, and log in with the new password
    with conn.cursor() as cur:
        cur.execute("SELECT CURRENT_USER()")
        assert cur.fetchone()[0].startswith(user + "@")
    assert reloads == ["first-password", "second-password"]
    holder.close()


def test_a_password_that_is_still_wrong_after_the_re_read_is_raised(
    db_settings: DatabaseSettings, fetcher_user: tuple[str, Any]
) -> None:
    user, _ = fetcher_user
    reloads = []

    def stale_secret() -> DatabaseSettings:
        reloads.append(1)
        return replace(db_settings, user=user, password="not-the-password")

    holder = ConnectionHolder(stale_secret(), reload=stale_secret)

    with pytest.raises(pymysql.err.OperationalError) as refused:
        holder.get()
    assert refused.value.args[0] == 1045
    assert len(reloads) == 2  # the initial read and exactly one re-read: no retry loop


def test_without_a_reload_a_refused_login_is_raised_at_once(
    db_settings: DatabaseSettings, fetcher_user: tuple[str, Any]
) -> None:
    user, _ = fetcher_user

    with pytest.raises(pymysql.err.OperationalError):
        ConnectionHolder(replace(db_settings, user=user, password="wrong")).get()
