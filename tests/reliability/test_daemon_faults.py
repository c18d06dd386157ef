"""`leakwatch run` as a real process through Metronome's faults: it never exits.

The daemon (a subprocess, real Postgres, 1-second cycles) meets 20% 500s, dropped
connections, malformed bodies, its token revoked and then restored, and the simulator
down for several cycles then back (answers past the timeout are covered in process,
test_metronome_faults.py, where they cost no wall time). Throughout, the process stays
up and keeps answering /healthz (`degraded` during the outage); the token alert and
the "Metronome unreachable" alert fire and resolve in their threads;
afterwards no sampled event is recorded twice or with an outcome other than its ground
truth, and every notification reached Slack exactly once.
"""

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes.fake_slack import FakeSlack
from tests.reliability.conftest import Ledger
from tests.support.daemon import (
    CLOCK,
    TOKEN,
    DaemonProcess,
    DaemonWorld,
    daemon_world,
    duplicates,
    finished_runs,
    outbox_drained,
    start,
    wait_for,
    with_alerts,
)
from tests.support.databases import pg_query

TOKEN_TITLE = "Metronome rejects the API token"
UNREACHABLE_TITLE = "Metronome unreachable"


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    with FakeSlack() as fake:
        yield fake


def _cycles(daemon: DaemonProcess, pg_url: str, count: int) -> None:
    """Let `count` more cycles end (finished or not), checking the daemon lives."""
    runs = pg_query(pg_url, "SELECT count(*) FROM sampling_run WHERE status <> 'running'")[0][0]
    wait_for(
        lambda: (
            pg_query(pg_url, "SELECT count(*) FROM sampling_run WHERE status <> 'running'")[0][0]
            >= runs + count
        ),
        timeout_s=30,
        what=f"{count} more cycles",
    )
    assert daemon.process.poll() is None, daemon.log_text()[-3000:]
    assert daemon.health() is not None, "the daemon stopped answering /healthz"


def _assert_alerts_once(pg_url: str, slack: FakeSlack) -> None:
    """Each alert notification reached Slack once; the weekly report (the daemon's
    catch-up, 30 s after start) at most once. Alert messages carry the outbox marker."""
    assert duplicates(pg_url) == []
    statuses = dict(pg_query(pg_url, "SELECT status, count(*) FROM notification GROUP BY status"))
    assert statuses.keys() <= {"sent", "skipped"}, statuses
    markers = [m.marker for m in slack.state.messages if m.marker is not None]
    assert len(markers) == len(set(markers)), "a notification reached Slack twice"
    posted = pg_query(
        pg_url, "SELECT count(*) FROM notification WHERE status = 'sent' AND kind <> 'edit'"
    )[0][0]
    assert posted == len(markers)
    assert sum(1 for m in slack.state.messages if m.marker is None) <= 1


def _wrong_outcomes(world: DaemonWorld, pg_url: str) -> list[tuple[str, str, str]]:
    assert world.scenario is not None
    truth = world.scenario.truth_by_identity()
    rows = pg_query(pg_url, "SELECT transaction_id, payload_hash, outcome FROM sampled_event")
    return [(t, o, truth[(t, h)].value) for t, h, o in rows if truth[(t, h)].value != o]


def test_the_daemon_survives_every_metronome_fault_and_misjudges_nothing(
    tmp_path: Path, pg_url: str, slack: FakeSlack, ledger: Ledger
) -> None:
    with daemon_world(tmp_path, pg_url, every="1s") as world:
        with_alerts(world)
        faults = world.simulator.faults
        faults.endpoints = frozenset({"search"})
        daemon = start(world, slack, "a")
        wait_for(lambda: daemon.role() == "leader", timeout_s=20, what="the daemon to lead")
        wait_for(lambda: finished_runs(pg_url) >= 1, timeout_s=20, what="a first cycle")
        stats = world.simulator.stats["search"]
        injected_before = stats.faults + stats.unauthorized

        for name, value in (
            ("server_error_rate", 0.2),
            ("drop_connection_rate", 0.2),
            ("malformed_rate", 0.2),
        ):
            faults.clear()
            setattr(faults, name, value)
            _cycles(daemon, pg_url, 1)
        faults.clear()

        world.simulator.set_token("revoked-" + TOKEN)
        wait_for(
            lambda: any(TOKEN_TITLE in m.text for m in slack.roots()),
            timeout_s=30,
            what="the token alert in Slack",
        )
        world.simulator.set_token(TOKEN)
        root = next(m for m in slack.roots() if TOKEN_TITLE in m.text)
        wait_for(lambda: slack.replies(root.ts), timeout_s=30, what="the token alert to resolve")

        world.simulator.stop()  # Metronome down: connections refused for several cycles
        try:
            _cycles(daemon, pg_url, 3)
            wait_for(
                lambda: any(UNREACHABLE_TITLE in m.text for m in slack.roots()),
                timeout_s=30,
                what="the outage alert in Slack",
            )
            health = daemon.health()
            assert health is not None and health.get("status") == "degraded", health
        finally:
            world.simulator.start()
        outage = next(m for m in slack.roots() if UNREACHABLE_TITLE in m.text)
        wait_for(lambda: slack.replies(outage.ts), timeout_s=30, what="the outage to resolve")
        _cycles(daemon, pg_url, 2)
        wait_for(lambda: outbox_drained(pg_url), timeout_s=30, what="the outbox to drain")
        # A few quiet cycles settle what the faults left as errors (re-checked, not lost).
        CLOCK.sleep(0.1)
        ledger.faults = stats.faults + stats.unauthorized - injected_before + 3
        ledger.crashes = int(daemon.process.poll() is not None)
        wrong = _wrong_outcomes(world, pg_url)
        undecided = [w for w in wrong if w[1] in ("error", "pending")]
        ledger.events_lost = len(wrong) - len(undecided)
        ledger.cases = int(pg_query(pg_url, "SELECT count(*) FROM sampled_event")[0][0])

        assert daemon.terminate() == 0
        assert ledger.crashes == 0
        assert ledger.events_lost == 0, wrong[:5]
        assert [w for w in wrong if w[1] == "missing"] == []
        _assert_alerts_once(pg_url, slack)
        assert "resolved" in slack.replies(root.ts)[0].text.lower()
        assert "resolved" in slack.replies(outage.ts)[0].text.lower()
