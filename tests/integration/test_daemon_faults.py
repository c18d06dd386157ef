"""The daemon under faults: Postgres connections killed, Postgres unreachable, SIGKILL
at random points. Real subprocess daemons, real Postgres (a database of our own per
test), the simulator and the fake Slack on loopback.

What must hold after every fault: the daemon is still alive (or, after SIGKILL, a
restarted one recovers), there is never more than one leader, no sampled event is
recorded twice, no alert episode fires twice, every notification reaches Slack exactly
once, and no sampling run is left "running".

We never stop the machine's Postgres server (others use it): its connections to our
database are terminated with `pg_terminate_backend`, and "unreachable" is our database
refusing connections (`ALLOW_CONNECTIONS false`) while its sessions are terminated.
"""

import json
import random
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.fake_slack import FakeSlack
from tests.support.daemon import (
    CLOCK,
    DaemonWorld,
    admin,
    assert_nothing_lost_or_doubled,
    daemon_world,
    db_name,
    finished_runs,
    fired,
    outbox_drained,
    slow_searches,
    start,
    start_with,
    terminate,
    wait_for,
    with_alerts,
)
from tests.support.databases import pg_query


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    with FakeSlack() as fake:
        yield fake


def test_killed_connections_mid_cycle_and_mid_send_lose_and_double_nothing(
    tmp_path: Path, pg_url: str, slack: FakeSlack
) -> None:
    rng = random.Random(11)
    with daemon_world(tmp_path, pg_url) as world:
        with_alerts(world)
        # Mid-send: Slack holds the first post while every session of ours is killed.
        # Armed before the daemon starts, so the first post is held whenever it comes
        # (armed after, a fast first cycle could post before the hold and none after).
        slack.inject("hold", methods={"chat.postMessage"})
        daemon = start(world, slack, "a")
        wait_for(lambda: daemon.role() == "leader", timeout_s=60, what="the daemon to lead")
        wait_for(slack.state.hold_reached.is_set, timeout_s=120, what="the first alert post")
        assert terminate(pg_url) >= 1
        slack.state.hold_release.set()
        # Mid-cycle, at random points: the lock session and the pool's sessions.
        for _ in range(4):
            CLOCK.sleep(rng.uniform(0.2, 1.0))
            terminate(pg_url, application_name="leakwatch-leader" if rng.random() < 0.5 else None)
        assert daemon.process.poll() is None, daemon.log_text()[-3000:]
        wait_for(lambda: daemon.role() == "leader", timeout_s=60, what="the daemon to lead again")
        runs = finished_runs(pg_url)
        wait_for(lambda: finished_runs(pg_url) >= runs + 1, timeout_s=60, what="cycles again")
        wait_for(lambda: outbox_drained(pg_url), timeout_s=60, what="the outbox to drain")
        assert daemon.terminate() == 0
        assert fired(pg_url) >= 1
        assert_nothing_lost_or_doubled(pg_url, slack)


def test_postgres_unreachable_for_a_while_then_back(
    tmp_path: Path, pg_url: str, slack: FakeSlack
) -> None:
    name = db_name(pg_url)
    with daemon_world(tmp_path, pg_url) as world:
        with_alerts(world)
        daemon = start(world, slack, "a")
        wait_for(lambda: daemon.role() == "leader", timeout_s=20, what="the daemon to lead")
        wait_for(lambda: finished_runs(pg_url) >= 1, timeout_s=20, what="a first cycle")
        admin(pg_url, f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false')
        try:
            terminate(pg_url)
            wait_for(lambda: daemon.role() == "follower", timeout_s=10, what="a step down")
            CLOCK.sleep(2)  # several election beats and job ticks with no database
            assert daemon.process.poll() is None, daemon.log_text()[-3000:]
            assert daemon.role() == "follower"
        finally:
            admin(pg_url, f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS true')
        wait_for(lambda: daemon.role() == "leader", timeout_s=20, what="the daemon to lead again")
        runs = finished_runs(pg_url)
        wait_for(lambda: finished_runs(pg_url) >= runs + 1, timeout_s=20, what="cycles again")
        wait_for(lambda: outbox_drained(pg_url), timeout_s=30, what="the outbox to drain")
        health = daemon.health()
        assert health is not None and health["http_status"] == 200
        assert daemon.terminate() == 0
        assert_nothing_lost_or_doubled(pg_url, slack)


def test_sigkill_at_random_points_across_cycles_then_a_clean_restart(
    tmp_path: Path, pg_url: str, slack: FakeSlack
) -> None:
    rng = random.Random(5)
    with daemon_world(tmp_path, pg_url) as world:
        with_alerts(world)
        slow_searches(world)
        # The longest test here (~15 s): each round starts a process and kills it.
        for round_ in range(4):
            daemon = start(world, slack, f"killed-{round_}")
            wait_for(
                lambda d=daemon: d.role() == "leader",  # type: ignore[misc]
                timeout_s=20,
                what="the daemon to lead",
            )
            CLOCK.sleep(rng.uniform(0.1, 2.5))
            daemon.kill()
        final = start(world, slack, "final")
        wait_for(lambda: final.role() == "leader", timeout_s=20, what="the daemon to lead")
        runs = finished_runs(pg_url)
        wait_for(lambda: finished_runs(pg_url) >= runs + 1, timeout_s=20, what="cycles")
        # An empty outbox proves nothing until the alert has fired (the alert job runs
        # on its own beat, possibly after the cycle just awaited).
        wait_for(lambda: fired(pg_url) >= 1, timeout_s=30, what="the alert to fire")
        wait_for(lambda: outbox_drained(pg_url), timeout_s=30, what="the outbox to drain")
        assert final.terminate() == 0
        assert_nothing_lost_or_doubled(pg_url, slack)
        abandoned = pg_query(pg_url, "SELECT count(*) FROM sampling_run WHERE status = 'abandoned'")
        assert abandoned[0][0] >= 1


def test_a_rejected_token_fires_a_health_alert_and_a_fixed_one_resolves_it(
    tmp_path: Path, pg_url: str, slack: FakeSlack
) -> None:
    """Token rejected → fire; restarted with the right token → resolve, in one thread."""
    with daemon_world(tmp_path, pg_url) as world:
        with_alerts(world)
        wrong = start_with(world, slack, "wrong-token", {"METRONOME_BEARER_TOKEN": "not-it-0000"})
        wait_for(lambda: wrong.role() == "leader", timeout_s=20, what="the daemon to lead")
        wait_for(
            lambda: any("Metronome rejects the API token" in m.text for m in slack.roots()),
            timeout_s=20,
            what="the token alert in Slack",
        )
        assert wrong.process.poll() is None
        assert wrong.terminate() == 0
        root = next(m for m in slack.roots() if "Metronome rejects the API token" in m.text)

        fixed = start(world, slack, "fixed")
        wait_for(lambda: fixed.role() == "leader", timeout_s=20, what="the daemon to lead")
        wait_for(lambda: slack.replies(root.ts), timeout_s=30, what="the resolve in the thread")
        wait_for(lambda: outbox_drained(pg_url), timeout_s=30, what="the outbox to drain")
        assert fixed.terminate() == 0
        [reply] = slack.replies(root.ts)
        assert "resolved" in reply.text.lower()
        token_rows = pg_query(
            pg_url, "SELECT status, episode FROM alert WHERE rule_name = 'token_rejected'"
        )
        assert token_rows == [("inactive", 1)]
        assert_nothing_lost_or_doubled(pg_url, slack)


def lock_holder(database_url: str) -> int | None:
    rows = pg_query(
        database_url,
        "SELECT l.pid FROM pg_locks l JOIN pg_database d ON d.oid = l.database"
        " WHERE l.locktype = 'advisory' AND l.granted AND d.datname = current_database()"
        " AND l.objid = 1818583403",
    )
    return int(rows[0][0]) if rows else None


def overlapping_runs(database_url: str) -> list[tuple[Any, ...]]:
    """Pairs of runs that both did work at the same time (two leaders at once)."""
    return pg_query(
        database_url,
        "SELECT a.id, a.status, b.id, b.status FROM sampling_run a JOIN sampling_run b"
        " ON a.id < b.id AND b.started_at < coalesce(a.finished_at, 'infinity')"
        " AND a.started_at < coalesce(b.finished_at, 'infinity')",
    )


def test_the_leaders_lock_session_killed_mid_cycle_hands_over_without_two_leaders(
    tmp_path: Path, pg_url: str, slack: FakeSlack
) -> None:
    rng = random.Random(3)
    with daemon_world(tmp_path, pg_url) as world:
        with_alerts(world)
        slow_searches(world)
        first = start(world, slack, "first")
        wait_for(lambda: first.role() == "leader", timeout_s=20, what="a leader")
        second = start(world, slack, "second")
        wait_for(lambda: second.role() == "follower", timeout_s=20, what="a follower")
        for _ in range(3):
            wait_for(
                lambda: pg_query(
                    pg_url, "SELECT count(*) FROM sampling_run WHERE status = 'running'"
                )[0][0],
                timeout_s=20,
                what="a cycle in flight",
            )
            CLOCK.sleep(rng.uniform(0.0, 0.5))
            holder = lock_holder(pg_url)
            assert holder is not None
            admin(pg_url, f"SELECT pg_terminate_backend({holder})")
            wait_for(
                lambda h=holder: lock_holder(pg_url) not in (None, h),  # type: ignore[misc]
                timeout_s=10,
                what="a new leader",
            )
        runs = finished_runs(pg_url)
        wait_for(lambda: finished_runs(pg_url) >= runs + 1, timeout_s=20, what="cycles")
        wait_for(lambda: outbox_drained(pg_url), timeout_s=30, what="the outbox to drain")
        # A leader whose session died learns it at its next election beat (0.5 s here);
        # it starts no job before then (each job re-checks with the server first).
        wait_for(
            lambda: sorted([str(first.role()), str(second.role())]) == ["follower", "leader"],
            timeout_s=10,  # a few beats, with room for a loaded CI machine
            what="one leader and one follower",
        )
        assert first.terminate() == 0 and second.terminate() == 0
        assert_nothing_lost_or_doubled(pg_url, slack)
        assert overlapping_runs(pg_url) == []


UNREACHABLE_TITLE = "Metronome unreachable"


def append_usage(world: DaemonWorld, count: int, *, tag: str) -> None:
    """New usage keeps arriving in the source log (an hour old: inside the window)."""
    stamp = (CLOCK.now() - timedelta(hours=1)).isoformat()
    with (world.tmp_path / "usage.jsonl").open("a", encoding="utf-8") as log:
        for i in range(count):
            event = {
                "transaction_id": f"{tag}-{i}",
                "customer_id": "acme",
                "event_type": "api_request",
                "timestamp": stamp,
                "properties": {},
            }
            log.write(json.dumps(event) + "\n")


def test_metronome_down_fires_the_unreachable_alert_and_degrades_healthz_then_resolves(
    tmp_path: Path, pg_url: str, slack: FakeSlack
) -> None:
    """A total outage (every search answers 500), default [health] settings: the health
    alert fires in Slack and /healthz says `degraded` with the reason; when Metronome is
    back, the alert resolves in its thread and /healthz is `ok` again, within a cycle."""
    with daemon_world(tmp_path, pg_url) as world:
        with_alerts(world)
        # Default retries too (4: five attempts a batch, more than a 2 s cycle allows).
        config = world.config_path.read_text(encoding="utf-8")
        world.config_path.write_text(config.replace("max_retries = 1\n", ""), encoding="utf-8")
        daemon = start(world, slack, "a")
        wait_for(lambda: daemon.role() == "leader", timeout_s=60, what="the daemon to lead")
        wait_for(lambda: finished_runs(pg_url) >= 1, timeout_s=60, what="a first cycle")
        health = daemon.health()
        assert health is not None and health["status"] == "ok", health

        faults = world.simulator.state.faults
        faults.endpoints = frozenset({"search"})
        faults.server_error_rate = 1.0
        append_usage(world, 200, tag="during-outage")
        wait_for(
            lambda: any(UNREACHABLE_TITLE in m.text for m in slack.roots()),
            timeout_s=60,
            what="the Metronome unreachable alert in Slack",
        )
        degraded = wait_for(
            lambda: (h := daemon.health()) is not None and h["status"] == "degraded" and h,
            timeout_s=60,
            what="/healthz to say degraded",
        )
        assert degraded["http_status"] == 200  # a restart cannot bring Metronome back
        reason = degraded["problems"]["metronome_unreachable"]
        assert "lookup batches failed" in reason and "HTTP 500" in reason, reason
        root = next(m for m in slack.roots() if UNREACHABLE_TITLE in m.text)

        faults.clear()
        append_usage(world, 50, tag="after-outage")
        cleared_at = finished_runs(pg_url)
        wait_for(
            lambda: (h := daemon.health()) is not None and h["status"] == "ok",
            timeout_s=60,
            what="/healthz to be ok again",
        )
        # The cycle running when Metronome came back may still have failed; the next is clean.
        assert finished_runs(pg_url) - cleared_at <= 2
        wait_for(lambda: slack.replies(root.ts), timeout_s=60, what="the resolve in the thread")
        wait_for(lambda: outbox_drained(pg_url), timeout_s=60, what="the outbox to drain")
        assert daemon.process.poll() is None, daemon.log_text()[-3000:]
        assert daemon.terminate() == 0
        assert any("resolved" in r.text.lower() for r in slack.replies(root.ts))
        rows = pg_query(pg_url, "SELECT status FROM alert WHERE rule_name = 'api_unreachable'")
        assert rows == [("inactive",)]
        # No sampled event is judged missing for the outage.
        assert pg_query(
            pg_url,
            "SELECT count(*) FROM sampled_event"
            " WHERE transaction_id LIKE 'during-outage-%' AND outcome = 'missing'",
        ) == [(0,)]
        assert_nothing_lost_or_doubled(pg_url, slack)
