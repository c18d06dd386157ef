"""Nothing leakwatch writes carries a secret: logs at debug, the store, reports, Slack,
/metrics, error messages.

Distinctive canary secrets — the Metronome token, the Slack bot token and the store's
database password (Postgres at 127.0.0.1:5432 with trust auth, so the password is
carried but never checked) — go through a run that exercises every writer: cycles
under faults (retries, failures, the token revoked and restored), alerts fired and
resolved in Slack, the weekly report written and sent, then the CLI's read commands
and a failing `check`. Everything produced is then searched for each canary, raw and
URL-encoded.
"""

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest
from prometheus_client import generate_latest
from sqlalchemy import Engine, inspect, text

from leakwatch.pipeline.report import produce_weekly_report
from leakwatch.wiring import build_report_slack
from tests.reliability.conftest import Ledger
from tests.reliability.world import cycle_world, leak_alert
from tests.support.databases import postgres_store

METRONOME_CANARY = "lwcanary-metronome-7f3a9c2e51"
SLACK_CANARY = "xoxb-lwcanary-slack-5d8e1b6604"
DB_PASSWORD_CANARY = "lwcanary-dbpw-41c7d09b"
CANARIES = (METRONOME_CANARY, SLACK_CANARY, DB_PASSWORD_CANARY)
ALERTS = leak_alert()


@pytest.fixture
def pg_url_with_password() -> Iterator[str]:
    with postgres_store() as url:
        yield url.replace("://postgres@", f"://postgres:{DB_PASSWORD_CANARY}@", 1)


def _forms(secret: str) -> set[str]:
    return {secret, quote(secret, safe=""), quote_plus(secret)}


def _leaks(name: str, content: str) -> list[str]:
    return [
        f"{name} holds {secret[:12]}…"
        for s in CANARIES
        for secret in _forms(s)
        if secret in content
    ]


def _dump_store(engine: Engine) -> str:
    """Every row of every table, as text."""
    parts = []
    with engine.connect() as conn:
        for table in inspect(engine).get_table_names():
            for row in conn.execute(text(f'SELECT * FROM "{table}"')):
                parts.append(f"{table}: {tuple(row)!r}")
    return "\n".join(parts)


def _cli(args: list[str], cwd: Path, env: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "leakwatch", *args],
        cwd=cwd,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return f"$ leakwatch {' '.join(args)} -> {done.returncode}\n{done.stdout}\n{done.stderr}"


def test_no_secret_in_logs_store_reports_slack_metrics_or_messages(
    tmp_path: Path, pg_url_with_password: str, ledger: Ledger
) -> None:
    report_dir = tmp_path / "reports"
    extra = ALERTS + f'\n[report]\nout_dir = "{report_dir}"\n'
    with cycle_world(
        tmp_path,
        database_url=pg_url_with_password,
        token=METRONOME_CANARY,
        slack_token=SLACK_CANARY,
        extra_config=extra,
        sample_size=40,
    ) as world:
        faults = world.simulator.faults
        faults.endpoints = frozenset({"search"})
        world.cycle()
        faults.server_error_rate = 0.3
        faults.drop_connection_rate = 0.1
        world.cycle()
        world.cycle()
        faults.clear()
        world.simulator.set_token("revoked-0000")
        world.cycle()
        world.cycle()
        world.simulator.set_token(METRONOME_CANARY)
        world.recover()
        settings = world.runtime.settings
        outcome = produce_weekly_report(
            settings,
            sessions=world.runtime.sessions,
            slack=build_report_slack(settings),
            now=world.clock.now(),
            send=True,
        )
        world.jobs.refresh_store_metrics()

        outputs: dict[str, str] = {
            "debug log": (tmp_path / "leakwatch.log").read_text(encoding="utf-8"),
            "store": _dump_store(world.runtime.engine),
            "metrics": generate_latest(world.metrics.registry).decode(),
            "slack payloads": repr(world.slack.state.payloads),
            "slack messages": repr(world.slack.state.messages),
            "slack files": repr([f.data for f in world.slack.files.values()]),
        }
        for path in outcome.paths:
            outputs[f"report {path.name}"] = path.read_bytes().decode("utf-8", "replace")
        env = {
            "METRONOME_BEARER_TOKEN": METRONOME_CANARY,
            "SLACK_BOT_TOKEN": SLACK_CANARY,
            "LEAKWATCH_SLACK_BASE_URL": world.slack.base_url,
            "LEAKWATCH_CONFIG": str(tmp_path / "leakwatch.toml"),
        }
        for args in (["status", "--json"], ["outcomes"]):
            outputs[" ".join(args)] = _cli(args, tmp_path, env)
        # Error messages: Metronome refusing the token, and the store unreachable.
        outputs["check, token refused"] = _cli(
            ["check"],
            tmp_path,
            {**env, "METRONOME_BEARER_TOKEN": "wrong-" + METRONOME_CANARY[::-1]},
        )
        unreachable = pg_url_with_password.replace("127.0.0.1:5432", "127.0.0.1:9")
        outputs["status, store unreachable"] = _cli(
            ["status"], tmp_path, {**env, "LEAKWATCH_DATABASE_URL": unreachable}
        )

        leaks = [leak for name, content in outputs.items() for leak in _leaks(name, content)]
        ledger.cases = len(outputs)
        ledger.faults = len(CANARIES)
        ledger.events_lost = world.truth_report()[1]

        assert sum(len(c) for c in outputs.values()) > 10_000
        assert "sampled_event:" in outputs["store"] and "notification:" in outputs["store"]
        assert world.slack.state.messages, "nothing reached Slack: the test proves little"
        # The search itself works: the config file (the user's own) does hold the password.
        assert _leaks("config", (tmp_path / "leakwatch.toml").read_text(encoding="utf-8"))
        assert leaks == []
