"""SIGKILL at random points, 50 times, across every stage that writes or sends, on
SQLite and on Postgres.

Each round forks a leakwatch process (a real process; forking skips the import cost,
so 50 kills fit in CI) that runs a daemon beat against the shared store: the
check cycle, alert evaluation, the outbox send and, every few rounds, the weekly
report send for a week of its own. The parent picks a stage at random, waits until
the child enters it, lets it run a random moment, and sends SIGKILL. Then a clean
run finishes what the kills left. What must hold: the store is consistent (each
sampled event once, no run left running, every notification and report sent), the
outcome counts equal those of a fault-free reference run over the same log, and
Slack received every notification and every report exactly once.

The source draws its whole window each cycle (sample_size above the log's size), so
"the same outcomes as the reference" is exact, not statistical.
"""

import os
import random
import signal
import sys
import time
import traceback
from collections import Counter
from datetime import timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from leakwatch.clock import FakeClock
from leakwatch.config import Settings
from leakwatch.core.weeks import IsoWeek
from leakwatch.pipeline.report import produce_weekly_report
from leakwatch.store.db import make_engine, session_factory, upgrade
from leakwatch.wiring import build_report_slack, build_runtime
from tests.reliability.conftest import Ledger
from tests.reliability.world import EVERY, START, Served, leak_alert, served

KILLS = 50
STAGES = ("check", "alerts", "outbox", "report")
REPORT_EVERY = 4
UTC_ZONE = ZoneInfo("UTC")
EVENTS = 160
ALERTS = leak_alert(repeat_interval="30m")


def _week(round_: int) -> str:
    """A distinct past week for each report round, so every report round sends one."""
    return str(IsoWeek.last_complete(START - timedelta(weeks=round_ // REPORT_EVERY), UTC_ZONE))


def _beat(settings: Settings, round_: int, *, stage_file: Path | None = None) -> None:
    """One daemon beat at round `round_`'s time; note each stage entered in `stage_file`."""

    def enter(stage: str) -> None:
        if stage_file is not None:
            with stage_file.open("a", encoding="utf-8") as out:
                out.write(stage + "\n")

    clock = FakeClock(START + round_ * EVERY)
    runtime = build_runtime(settings, clock=clock, migrate=False)
    try:
        enter("check")
        runtime.run_cycle()
        enter("alerts")
        runtime.evaluate_alerts()
        enter("outbox")
        runtime.send_notifications()
        if round_ % REPORT_EVERY == 0 and settings.slack_bot_token is not None:
            enter("report")
            produce_weekly_report(
                settings,
                sessions=runtime.sessions,
                slack=runtime.report_slack,
                now=clock.now(),
                week=_week(round_),
                send=True,
            )
        enter("done")
    finally:
        runtime.close()


def _fork_beat(settings: Settings, round_: int, stage_file: Path) -> int:
    pid = os.fork()
    if pid == 0:  # the child: one beat, then leave without running the parent's clean-up
        code = 0
        try:
            _beat(settings, round_, stage_file=stage_file)
        except BaseException:
            traceback.print_exc(file=sys.stderr)
            code = 1
        finally:
            os._exit(code)
    return pid


def _stage(stage_file: Path) -> str:
    lines = stage_file.read_text(encoding="utf-8").split() if stage_file.exists() else []
    return lines[-1] if lines else "start"


def _kill_in(settings: Settings, round_: int, target: str, rng: random.Random, tmp: Path) -> str:
    """Run a beat in a child; SIGKILL it a random moment into `target`; say where it died."""
    stage_file = tmp / f"stage-{round_}"
    order = ["start", *STAGES, "done"]
    pid = _fork_beat(settings, round_, stage_file)
    try:
        for _ in range(20_000):  # at most ~20 s for the child to reach its stage
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                pid = 0
                code = os.waitstatus_to_exitcode(status)
                assert code == 0, f"round {round_}: the beat crashed (exit {code})"
                return "finished"
            if order.index(_stage(stage_file)) >= order.index(target):
                break
            time.sleep(0.001)
        time.sleep(rng.uniform(0, 0.06))
        where = _stage(stage_file)
        os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        pid = 0
        if os.WIFEXITED(status):
            assert os.WEXITSTATUS(status) == 0, f"round {round_}: the beat crashed"
            return "finished"
        return where
    finally:
        if pid:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)


def _keep_up(world: Served, round_: int) -> None:
    """Move the fake Slack's (and simulator's) clock to the beat's time.

    The outbox looks for an earlier attempt's message from a little before the row was
    written: a Slack whose ts stayed at the start would hide it (a doubled post).
    """
    when = START + round_ * EVERY
    if when > world.clock.now():
        world.clock.set(when)


def _settle(world: Served, settings: Settings, first_round: int) -> int:
    """Clean beats until nothing is undecided or unsent; resend every report week."""
    engine = make_engine(settings.database_url)
    round_ = first_round
    try:
        for round_ in range(first_round, first_round + 12):
            if settings.slack_bot_token is not None:
                _keep_up(world, round_)
            _beat(settings, round_)
            with engine.connect() as conn:
                open_rows = conn.exec_driver_sql(
                    "SELECT (SELECT count(*) FROM sampled_event WHERE outcome IN"
                    " ('pending', 'error')) + (SELECT count(*) FROM notification"
                    " WHERE status NOT IN ('sent', 'skipped'))"
                ).scalar_one()
            if not open_rows:
                break
    finally:
        engine.dispose()
    return round_


def _outcomes(database_url: str) -> Counter[str]:
    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            rows = conn.exec_driver_sql(
                "SELECT outcome, count(*) FROM sampled_event GROUP BY outcome"
            ).all()
    finally:
        engine.dispose()
    return Counter({str(o): int(n) for o, n in rows})


@pytest.fixture(params=["sqlite", "postgres"])
def killed_store(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The store the killed beats write: a SQLite file, or a fresh Postgres database of
    this test's own (a killed client's session is rolled back by the server)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'killed.db'}"
    return str(request.getfixturevalue("pg_url"))


def test_fifty_sigkills_across_every_stage_lose_and_double_nothing(
    tmp_path: Path, killed_store: str, ledger: Ledger
) -> None:
    rng = random.Random(50)
    with served(
        tmp_path, events=EVENTS, sample_size=400, extra_config=ALERTS, database_url=killed_store
    ) as world:
        base = world.settings()
        out_dir = tmp_path / "reports"

        # The fault-free reference: the same log and schedule in a store of its own.
        reference = base.model_copy(
            update={
                "database_url": f"sqlite:///{tmp_path / 'reference.db'}",
                "report": base.report.model_copy(update={"out_dir": out_dir / "ref"}),
                "slack_bot_token": None,
            }
        )
        killed = base.model_copy(
            update={"report": base.report.model_copy(update={"out_dir": out_dir / "run"})}
        )
        for settings in (reference, killed):
            engine = make_engine(settings.database_url)
            upgrade(engine)  # the Postgres one is migrated already: nothing to do
            engine.dispose()
        _settle(world, reference, 0)
        expected = _outcomes(reference.database_url)

        where: Counter[str] = Counter()
        round_ = 0
        while sum(where.values()) < KILLS and round_ < KILLS * 3:
            stages = STAGES if round_ % REPORT_EVERY == 0 else STAGES[:3]
            _keep_up(world, round_)
            died = _kill_in(killed, round_, rng.choice(stages), rng, tmp_path)
            if died != "finished":
                where[died] += 1
            round_ += 1
        last = _settle(world, killed, round_)
        report_engine = make_engine(killed.database_url)
        try:
            for report_round in range(0, round_, REPORT_EVERY):
                produce_weekly_report(
                    killed,
                    sessions=session_factory(report_engine),
                    slack=build_report_slack(killed),
                    now=START + last * EVERY,
                    week=_week(report_round),
                    send=True,
                )
        finally:
            report_engine.dispose()

        got = _outcomes(killed.database_url)
        engine = make_engine(killed.database_url)
        with engine.connect() as conn:
            doubled = conn.exec_driver_sql(
                "SELECT count(*) - count(DISTINCT source || transaction_id || payload_hash)"
                " FROM sampled_event"
            ).scalar_one()
            running = conn.exec_driver_sql(
                "SELECT count(*) FROM sampling_run WHERE status = 'running'"
            ).scalar_one()
            unsent = conn.exec_driver_sql(
                "SELECT count(*) FROM notification WHERE status NOT IN ('sent', 'skipped')"
            ).scalar_one()
            posted = conn.exec_driver_sql(
                "SELECT count(*) FROM notification WHERE status = 'sent' AND kind <> 'edit'"
            ).scalar_one()
            reports_unsent = conn.exec_driver_sql(
                "SELECT count(*) FROM weekly_report WHERE sent_at IS NULL"
            ).scalar_one()
        engine.dispose()

        weeks = {_week(r) for r in range(0, round_, REPORT_EVERY)}
        report_roots = Counter(
            week for m in world.slack.roots() for week in weeks if week in m.text
        )
        alert_roots = [m for m in world.slack.state.messages if m.marker is not None]
        markers = [m.marker for m in alert_roots]

        ledger.cases = round_ + (last - round_ + 1)
        ledger.faults = sum(where.values())
        ledger.events_lost = sum((expected - got).values())
        ledger.events_doubled = int(doubled) + sum((got - expected).values())
        ledger.notifications_lost = int(unsent) + int(reports_unsent)
        ledger.notifications_lost += sum(1 for w in weeks if report_roots[w] == 0)
        ledger.notifications_lost += max(0, int(posted) - len(alert_roots))
        ledger.notifications_doubled = len(markers) - len(set(markers))
        ledger.notifications_doubled += sum(n - 1 for n in report_roots.values() if n > 1)

        assert sum(where.values()) == KILLS, where
        assert set(where) >= {"check", "alerts", "outbox", "report"}, where
        assert got == expected, (got, expected)
        assert running == 0
        assert ledger.events_lost == ledger.events_doubled == 0
        assert ledger.notifications_lost == 0, (unsent, reports_unsent, report_roots)
        assert ledger.notifications_doubled == 0, report_roots
        assert posted > 0 and weeks
