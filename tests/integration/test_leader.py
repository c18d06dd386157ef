"""Leader election against real Postgres, and the SQLite lock file.

Two `PostgresLeader`s on one database and key: exactly one holds the lock; releasing
or losing the connection hands it over; a leader whose session was killed notices
on its next check and steps down.
"""

import os
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from leakwatch.daemon.leader import (
    AnotherInstanceRunning,
    PostgresLeader,
    SqliteLockFile,
    advisory_lock_ids,
    libpq_url,
    sqlite_lock_path,
)
from leakwatch.errors import StoreError
from tests.support.databases import empty_postgres_url


@pytest.fixture(scope="module")
def database_url() -> Iterator[str]:
    """An empty database of our own (advisory locks are per database); tests release."""
    with empty_postgres_url("leakwatch_leader") as url:
        yield url


@pytest.fixture
def leaders(database_url: str) -> Iterator[tuple[PostgresLeader, PostgresLeader]]:
    pair = (PostgresLeader(database_url, key=4242), PostgresLeader(database_url, key=4242))
    yield pair
    for leader in pair:
        leader.release()


def test_exactly_one_of_two_takes_the_lead(leaders: tuple[PostgresLeader, PostgresLeader]) -> None:
    first, second = leaders
    assert first.try_acquire() is True
    assert second.try_acquire() is False
    assert first.is_leader() is True
    assert second.is_leader() is False
    # Asking again does not stack a second lock on the leader's session.
    assert first.try_acquire() is True
    first.release()
    assert first.is_leader() is False
    assert second.try_acquire() is True
    assert first.try_acquire() is False


def test_a_leader_whose_session_is_killed_steps_down_and_another_takes_over(
    database_url: str, leaders: tuple[PostgresLeader, PostgresLeader]
) -> None:
    first, second = leaders
    assert first.try_acquire()
    pid = first.backend_pid
    assert pid is not None
    with psycopg.connect(libpq_url(database_url), autocommit=True) as admin:
        # With a timeout, Postgres (14+) answers once the backend has exited and its
        # locks are gone; without one it answers when the signal is sent, and a loaded
        # machine could ask for the lock before the old session let go of it.
        admin.execute("SELECT pg_terminate_backend(%s, 10000)", (pid,))
    assert second.try_acquire() is True
    assert first.is_leader() is False
    # The old leader reconnects as a follower: it cannot take the lead back.
    assert first.try_acquire() is False
    assert second.is_leader() is True


def test_the_lock_is_released_when_the_process_connection_closes(
    database_url: str, leaders: tuple[PostgresLeader, PostgresLeader]
) -> None:
    first, second = leaders
    assert first.try_acquire()
    with psycopg.connect(libpq_url(database_url), autocommit=True) as admin:
        held = admin.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
            " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        ).fetchone()
    assert held == (1,)
    first.release()
    first.release()  # twice is harmless
    assert second.try_acquire()


def test_an_unreachable_database_means_follower_not_a_crash() -> None:
    leader = PostgresLeader(
        "postgresql+psycopg://nobody@127.0.0.1:9/none",
        key=1,
        connect_options={"connect_timeout": 1},
    )
    assert leader.try_acquire() is False
    assert leader.is_leader() is False


@pytest.mark.parametrize("key", [0, 1, 0x6C65616B, 2**40 + 7, -1, -(2**63), 2**63 - 1])
def test_pg_locks_shows_the_key_we_check_for(database_url: str, key: int) -> None:
    leader = PostgresLeader(database_url, key=key)
    try:
        assert leader.try_acquire()
        assert leader.is_leader(), "the pg_locks re-check must recognise our own lock"
        classid, objid = advisory_lock_ids(key)
        assert 0 <= classid < 2**32
        assert 0 <= objid < 2**32
    finally:
        leader.release()


def test_different_keys_do_not_compete(database_url: str) -> None:
    a = PostgresLeader(database_url, key=1)
    b = PostgresLeader(database_url, key=2)
    try:
        assert a.try_acquire()
        assert b.try_acquire()
    finally:
        a.release()
        b.release()


def test_a_check_beside_a_postgres_leader_is_refused_naming_the_holder(
    leaders: tuple[PostgresLeader, PostgresLeader],
) -> None:
    """`check` takes the daemon's advisory lock with acquire_or_fail: held, it refuses."""
    daemon, check = leaders
    assert daemon.try_acquire() is True
    with pytest.raises(AnotherInstanceRunning) as refused:
        check.acquire_or_fail()
    assert f"Postgres backend pid {daemon.backend_pid}, leakwatch-leader" in str(refused.value)
    assert "One leakwatch (the daemon or a check) searches" in str(refused.value)
    assert check.is_leader() is False
    daemon.release()
    check.acquire_or_fail()
    assert check.is_leader() is True
    assert daemon.try_acquire() is False  # the daemon follows while the check runs


def test_acquire_or_fail_on_an_unreachable_server_says_so_not_another_instance() -> None:
    leader = PostgresLeader("postgresql+psycopg://nobody:pw@127.0.0.1:1/none", key=1)
    with pytest.raises(StoreError, match=r"cannot reach the database at .*127\.0\.0\.1:1"):
        leader.acquire_or_fail()


def test_a_second_sqlite_instance_gets_a_clear_refusal(tmp_path: Path) -> None:
    path = sqlite_lock_path(f"sqlite:///{tmp_path / 'leakwatch.db'}", tmp_path / "state")
    assert path == tmp_path / "leakwatch.db.lock"
    first = SqliteLockFile(path)
    second = SqliteLockFile(path)
    first.acquire_or_fail()
    with pytest.raises(AnotherInstanceRunning) as refused:
        second.acquire_or_fail()
    assert f"(pid {os.getpid()})" in str(refused.value)
    assert "SQLite allows one instance — use Postgres for replicas" in str(refused.value)
    first.release()
    second.acquire_or_fail()
    assert second.is_leader()
    second.release()


def test_sqlite_in_memory_locks_in_the_state_dir(tmp_path: Path) -> None:
    assert sqlite_lock_path("sqlite://", tmp_path) == tmp_path / "leakwatch.lock"
