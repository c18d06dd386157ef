"""The CLI against a real simulator and store, as a user runs it: subprocesses, exit codes.

Each command is run as `python -m leakwatch …` with the config and token a user would
set; the simulator runs in this process on a loopback port.
"""

import csv
import io
import json
import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.support.cli import Setup

# One style for machines (RFC 3339 in UTC with `Z`), one for people.
MACHINE_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?Z$")
PEOPLE_TIME = re.compile(r"\b\d{4}-\d\d-\d\d \d\d:\d\d UTC\b")
ANY_ISO_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d|\+00:00")


def assert_machine_times(record: dict[str, Any], *keys: str) -> None:
    for key in keys:
        assert MACHINE_TIME.match(record[key]), (key, record[key])


def test_check_then_status_outcomes_lookup_alerts_report(setup: Setup) -> None:
    checked = setup.run("check", "--json")
    assert checked.returncode == 0, checked.stderr
    summary = json.loads(checked.stdout)
    # Not a terminal: progress as a few plain lines on stderr, stdout stays JSON.
    progress = [line for line in checked.stderr.splitlines() if line.startswith("looked up ")]
    assert 1 <= len(progress) <= 5
    done, _, due = progress[-1].removeprefix("looked up ").partition(" of ")
    assert done == due.split(",")[0]  # every transaction id due was looked up
    assert summary["status"] == "finished"
    assert summary["checked"] == 300 or summary["checked"] > 250
    assert summary["verdicts"]["matched"] > 200
    assert any(a["status"] == "firing" for a in summary["alerts"])
    assert_machine_times(summary, "started_at", "finished_at")

    status = setup.run("status", "--json", "--window", "1h")
    assert status.returncode == 0, status.stderr
    view = json.loads(status.stdout)
    assert view["overall"]["sampled"] == summary["checked"]
    assert 0 < view["overall"]["leak_rate"] < 0.2
    assert view["open_alerts"][0]["rule_name"] == "leak rate"
    assert_machine_times(view, "now")
    assert_machine_times(view["last_cycle"], "started_at", "finished_at")
    assert_machine_times(view["open_alerts"][0], "since", "last_evaluated_at")
    human = setup.run("status")
    assert human.returncode == 0 and "leak rate (95% CI)" in human.stdout
    assert PEOPLE_TIME.search(human.stdout) and not ANY_ISO_TIME.search(human.stdout)

    exported = setup.run("outcomes", "--format", "csv", "--since", "1h")
    rows = list(csv.DictReader(io.StringIO(exported.stdout)))
    assert len(rows) == summary["checked"]
    assert {"transaction_id", "outcome", "evidence", "attempts"} <= set(rows[0])
    for key in ("timestamp", "first_checked_at", "last_checked_at", "sampled_at"):
        assert all(MACHINE_TIME.match(r[key]) for r in rows if r[key]), key
    assert_machine_times(rows[0], "timestamp", "sampled_at")
    assert {r["healed"] for r in rows} <= {"true", "false"}
    leaking = setup.run("outcomes", "--outcome", "unmatched_customer", "--customer", "hooli")
    lines = [json.loads(line) for line in leaking.stdout.splitlines()]
    assert lines and all(r["outcome"] == "unmatched_customer" for r in lines)
    assert all(r["customer_id"] == "hooli" for r in lines)
    assert_machine_times(lines[0], "timestamp", "sampled_at")
    for key in ("first_checked_at", "last_checked_at"):
        assert all(MACHINE_TIME.match(r[key]) for r in lines if r[key] is not None), key

    txn = lines[0]["transaction_id"]
    looked = setup.run("lookup", txn, "no-such-txn", "--json")
    assert looked.returncode == 0, looked.stderr
    found = {r["transaction_id"]: r for r in json.loads(looked.stdout)}
    assert found[txn]["verdicts"][0]["outcome"] == "unmatched_customer"
    assert found["no-such-txn"]["items"] == []

    alerts = setup.run("alerts")
    assert alerts.returncode == 0 and "leak rate" in alerts.stdout
    silenced = setup.run("alerts", "silence", "leak rate", "--for", "1h")
    assert silenced.returncode == 0, silenced.stderr
    typo = setup.run("alerts", "silence", "leak rat", "--for", "1h")
    assert typo.returncode == 2 and "no alert rule named" in typo.stderr
    listed = setup.run("alerts", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert_machine_times(json.loads(listed.stdout)[0], "silenced_until", "since")
    assert PEOPLE_TIME.search(setup.run("alerts").stdout)
    no_such_scope = setup.run("alerts", "silence", "leak rate", "--scope", "event_type=foo")
    assert no_such_scope.returncode == 2
    assert "is not split by a group" in no_such_scope.stderr
    unsilenced = setup.run("alerts", "unsilence", "leak rate")
    assert unsilenced.returncode == 0 and "unsilenced 1 alert" in unsilenced.stdout
    assert json.loads(setup.run("alerts", "list", "--json").stdout)[0]["silenced_until"] is None

    week = datetime.now(UTC).strftime("%G-W%V")
    report = setup.run("report", "--week", week)
    assert report.returncode == 0, report.stderr
    written = sorted(p.suffix for p in (setup.cwd / "reports").iterdir())
    assert written == [".html", ".json", ".md", ".png"]
    [report_json] = (setup.cwd / "reports").glob("*.json")
    body = json.loads(report_json.read_text(encoding="utf-8"))
    assert_machine_times(body, "generated_at", "start_utc", "end_utc")
    # The current week is not over: the report says it is partial.
    assert body["partial"] is True
    [markdown] = (setup.cwd / "reports").glob("*.md")
    assert "partial week, through" in markdown.read_text(encoding="utf-8").splitlines()[0]
    unsent = setup.run("report", "--week", week, "--send")
    assert unsent.returncode == 2 and "SLACK_BOT_TOKEN" in unsent.stderr


def test_sample_prints_json_lines_and_counts(setup: Setup) -> None:
    result = setup.run("sample", "gateway", "-n", "5", "--seed", "1")
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(events) == 5
    assert all("transaction_id" in e and "_weight" in e for e in events)
    assert "drew 5 of" in result.stderr
    again = setup.run("sample", "gateway", "-n", "5", "--seed", "1")
    assert again.stdout == result.stdout
    unknown = setup.run("sample", "nope")
    assert unknown.returncode == 2 and "no source named 'nope'" in unknown.stderr
    assert "invalid configuration" not in unknown.stderr  # a bad argument, not a bad file


def test_missing_or_rejected_token_is_a_clear_error(setup: Setup) -> None:
    env = {k: v for k, v in setup.env.items() if k != "METRONOME_BEARER_TOKEN"}
    missing = subprocess.run(
        [sys.executable, "-m", "leakwatch", "check"],
        cwd=setup.cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert missing.returncode == 2
    assert "METRONOME_BEARER_TOKEN is not set" in missing.stderr
    wrong = setup.run("check", env={"METRONOME_BEARER_TOKEN": "wrong-token-000"})
    assert wrong.returncode == 1
    assert "rejected the API token" in wrong.stderr
    assert "wrong-token-000" not in wrong.stderr + wrong.stdout
    assert "Traceback" not in wrong.stderr


def test_bad_flags_exit_2(setup: Setup) -> None:
    for args in (
        ["status", "--window", "soon"],
        ["outcomes", "--format", "xml"],
        ["outcomes", "--outcome", "lost"],
        ["report", "--week", "2026-W99"],
    ):
        result = setup.run(*args)
        assert result.returncode == 2, (args, result.stderr)
        assert "Traceback" not in result.stderr


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_demo_finds_every_injected_leak(tmp_path: Path, db_url: str) -> None:
    del db_url
    result = subprocess.run(
        [sys.executable, "-m", "leakwatch", "demo", "--keep", str(tmp_path / "demo")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "found vs injected" in result.stdout
    assert "FIRING leak rate" in result.stdout
    assert (tmp_path / "demo" / "leakwatch.db").exists()
    assert list((tmp_path / "demo" / "reports").glob("*.html"))


def test_reconcile_before_and_after_a_check(setup: Setup) -> None:
    before = setup.run("reconcile", "--days", "2")
    assert before.returncode == 1
    assert "run `leakwatch check` first" in before.stdout
    assert setup.run("check", "--json").returncode == 0
    result = setup.run("reconcile", "--days", "2", "--json")
    assert result.returncode == 0, result.stderr
    body = json.loads(result.stdout)
    assert len(body["days"]) == 2 and body["rows"]
    assert body["flagged"] > 0  # dropped events and collisions leave exact gaps
    row = body["rows"][0]
    assert {"customer_id", "metric_name", "expected", "billed", "difference", "explanation"} <= set(
        row
    )
    assert "hooli" in body["unattributed_events"]
    text = setup.run("reconcile", "--days", "2")
    assert text.returncode == 0, text.stderr
    assert "flagged" in text.stdout and "within tolerance" in text.stdout


def test_status_fits_80_columns_and_cuts_nothing(setup: Setup) -> None:
    assert setup.run("check", "--json").returncode == 0
    result = setup.run("status", "--window", "1h", env={"COLUMNS": "80"})
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert all(len(line) <= 80 for line in lines), max(lines, key=len)
    assert "…" not in result.stdout
    # Every event type and both ends of every interval are there, if folded.
    flat = "".join(ch for ch in result.stdout if ch.isalnum() or ch in "_.%()–")
    for event_type in ("api_request", "gpu_seconds", "tokens"):
        assert event_type in flat
    assert flat.count("(") == flat.count(")")
