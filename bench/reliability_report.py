"""Run the reliability suite (the slow soak included) and write docs/reliability.md.

    python bench/reliability_report.py            # the whole suite, full soak: ~10 min
    python bench/reliability_report.py --quick    # without the 1 M-event soak

Every figure in the table comes from this run: each test of tests/reliability/ writes
its ledger (cases run, faults injected, events and notifications lost or doubled,
crashes) to a JSON-lines file named by LEAKWATCH_RELIABILITY_LEDGER, and pytest's
JUnit XML says which tests passed. The document is overwritten; nothing is edited by
hand.
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "reliability.md"
FIGURES = (
    "cases",
    "faults",
    "events_lost",
    "events_doubled",
    "notifications_lost",
    "notifications_doubled",
    "crashes",
)
# What each area injects, and what its "cases" and "faults" count.
AREAS = {
    "metronome_faults": (
        "Metronome faults in real cycles (in process, fake clock): 20% HTTP 500s, answers "
        "held past the client timeout, dropped connections, malformed / truncated / "
        "wrongly shaped / gzip-mislabelled / deeply nested bodies, a 429 storm, the token "
        "revoked mid-run then restored, the API down for 4 cycles then back",
        "sampled events judged",
        "faulty answers served",
    ),
    "daemon_faults": (
        "`leakwatch run` as a process (Postgres, 1 s cycles): 20% 500s, dropped "
        "connections, malformed bodies, the token revoked then restored, the simulator "
        "down for 3 cycles (its token and outage alerts fire and resolve in Slack)",
        "sampled events judged",
        "faulty answers served",
    ),
    "postgres_restart": (
        "A Postgres cluster of the test's own restarted, stopped and its sessions "
        "terminated (twice) while a cycle is in flight",
        "sampled events judged",
        "database faults",
    ),
    "sigkill": (
        "SIGKILL at random moments in the check, alert evaluation, outbox send and "
        "weekly report send, then a clean run; outcomes compared with a fault-free "
        "reference run (SQLite and Postgres)",
        "daemon beats run",
        "processes killed",
    ),
    "fuzz": (
        "Hypothesis: log lines (deep nesting, 70 KB lines, NUL bytes, invalid UTF-8, "
        "duplicate keys, every field of the wrong type, odd timestamps) through the "
        "field mapping and whole JSONL files; any TOML value under every config key, "
        "and config files of arbitrary text; search answers of every wrong shape",
        "generated inputs",
        "inputs rejected as bad (counted, not raised)",
    ),
    "secrets": (
        "Canary Metronome token, Slack token and database password through cycles under "
        "faults, alerts, the weekly report and the CLI; searched for in debug logs, the "
        "whole store, report files, Slack payloads and files, /metrics, CLI output",
        "outputs searched",
        "canary secrets",
    ),
    "soak": (
        "A 24-hour schedule on a fake clock against a growing source (CI: 3,000 → 6,000 "
        "events hourly; full: 500,000 → 1,000,000 events every 15 min); RSS, fds, "
        "sockets and cycle times measured",
        "cycles",
        "events appended",
    ),
}

NOTES = """## How to read it

- **events lost**: a sampled event whose recorded outcome, once the faults stopped and
  clean cycles ran, is not its ground truth (the scenario knows each event's true
  outcome), above all one recorded `missing` because a lookup failed; or, for the
  SIGKILL run, an outcome count below the fault-free reference run's.
- **events doubled**: one event (source, transaction id, payload hash) recorded twice,
  or an outcome count above the reference.
- **notifications lost / doubled**: an outbox row never sent, a sent row Slack never
  received, a weekly report never posted; a Slack message carrying the same outbox
  marker twice, a report posted twice for one week.
- **crashes**: an exception out of a daemon job (which would end `leakwatch run`), a
  daemon process that exited, a forked beat that died of anything but our SIGKILL.
- **faults injected**: what the simulator served wrong (its own counters), processes
  killed, database faults, canaries planted, generated inputs the code rejected.

## How it runs

- `tests/reliability/` is part of the normal test run (`.ci/run`), about 2-3 minutes
  on 2 cores. The 1 M-event soak is marked `slow` and skipped unless
  `LEAKWATCH_SOAK_FULL=1`, which this script sets; `--quick` leaves it out.
- Metronome is the built-in simulator over loopback HTTP; Slack is the fake in
  tests/fakes. In-process tests share a fake clock between client, cycle and
  simulator, so an hour of cycles costs seconds; real time is spent only where the
  fault is a socket timeout.
- Postgres restarts use a cluster the test creates (`tests/reliability/pg_cluster.py`):
  `initdb` and `pg_ctl` from /usr/lib/postgresql/*/bin in a fresh temporary directory
  on a free loopback port, never the shared server at 5432. `initdb` refuses root, so
  as root (CI) every command runs as the `postgres` system user through
  `runuser -u postgres --`, which owns the directory; as any other user, as that user.
- The SIGKILL test forks one leakwatch process per daemon beat (forking skips the
  import cost, so 50 kills fit in CI), once on a SQLite store and once on a Postgres
  database of its own (the server rolls back a killed client's session); the
  daemon-level SIGKILL on Postgres with a leader election is covered by
  tests/integration/test_daemon_faults.py.
"""


def run_suite(*, full_soak: bool, ledger: Path, junit: list[Path]) -> tuple[int, float, str]:
    """Run the suite in two pytest processes: the soak alone (so the memory it measures
    is its own, not what earlier tests left), then everything else."""
    env = {
        **os.environ,
        "LEAKWATCH_RELIABILITY_LEDGER": str(ledger),
        "LEAKWATCH_SOAK_FULL": "1" if full_soak else "0",
    }
    soak_test = "tests/reliability/test_soak.py"
    runs = ([soak_test], ["tests/reliability", f"--ignore={soak_test}"])
    started = time.monotonic()
    code = 0
    printed: list[str] = []
    pytest = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-s"]
    for xml, paths in zip(junit, runs, strict=True):
        done = subprocess.run(
            [*pytest, f"--junitxml={xml}", *paths],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        code = code or done.returncode
        printed += done.stdout.splitlines()
        print((done.stdout.strip().splitlines() or ["(no pytest summary)"])[-1])
    soak_lines = [line for line in printed if line.startswith("soak: ")]
    return code, time.monotonic() - started, "\n".join(soak_lines)


def results(junits: list[Path]) -> dict[str, str]:
    """Test node id → passed / failed / skipped / xfailed."""
    outcome: dict[str, str] = {}
    cases = [
        case
        for junit in junits
        if junit.exists()
        for case in ET.parse(junit).getroot().iter("testcase")  # noqa: S314 (our own run)
    ]
    for case in cases:
        module = case.get("classname", "").replace(".", "/")
        node = f"{module}.py::{case.get('name')}"
        status = "passed"
        for child in case:
            if child.tag in ("failure", "error"):
                status = "failed"
            elif child.tag == "skipped":
                message = child.get("type", "") + child.get("message", "")
                status = "xfailed" if "xfail" in message.lower() else "skipped"
        outcome[node] = status
    return outcome


def render(
    rows: list[dict[str, object]], outcome: dict[str, str], seconds: float, soak: str, code: int
) -> str:
    by_area: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(FIGURES, 0))
    tests: dict[str, list[str]] = defaultdict(list)
    for row in rows:
        area = str(row["area"])
        for figure in FIGURES:
            by_area[area][figure] += int(row[figure])  # type: ignore[call-overload]
        tests[area].append(outcome.get(str(row["test"]), "unknown"))
    counts = defaultdict(int)
    for status in outcome.values():
        counts[status] += 1
    lines = [
        "# Reliability: what was injected, and what came out",
        "",
        f"Generated by `python bench/reliability_report.py` on "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC ({platform.node() or 'this machine'}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}), in {seconds:.0f} s. "
        "Do not edit by hand: run the script again.",
        "",
        f"pytest: {counts['passed']} passed, {counts['failed']} failed, "
        f"{counts['xfailed']} xfailed, {counts['skipped']} skipped (exit {code}).",
        "",
        "| area | injected | cases run | faults injected | events lost | events doubled "
        "| notifications lost | notifications doubled | crashes | tests |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    total = dict.fromkeys(FIGURES, 0)
    for area, figures in sorted(by_area.items()):
        what, cases_are, faults_are = AREAS.get(area, (area, "cases", "faults"))
        for figure in FIGURES:
            total[figure] += figures[figure]
        verdicts = ", ".join(f"{n} {s}" for s, n in sorted(_count(tests[area]).items()))
        lines.append(
            f"| {area} | {what} | {figures['cases']:,} {cases_are} "
            f"| {figures['faults']:,} {faults_are} | {figures['events_lost']} "
            f"| {figures['events_doubled']} | {figures['notifications_lost']} "
            f"| {figures['notifications_doubled']} | {figures['crashes']} | {verdicts} |"
        )
    lines.append(
        f"| **total** | | {total['cases']:,} | {total['faults']:,} | {total['events_lost']} "
        f"| {total['events_doubled']} | {total['notifications_lost']} "
        f"| {total['notifications_doubled']} | {total['crashes']} | |"
    )
    lines += ["", "Soak measurements:", "", "```", soak or "(no soak line printed)", "```", ""]
    lines.append(NOTES)
    return "\n".join(lines)


def _count(values: list[str]) -> dict[str, int]:
    counted: dict[str, int] = defaultdict(int)
    for value in values:
        counted[value] += 1
    return counted


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="skip the 1 M-event soak")
    parser.add_argument("--out", type=Path, default=DOC)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="leakwatch-reliability-") as folder:
        ledger = Path(folder) / "ledger.jsonl"
        junit = [Path(folder) / "soak.xml", Path(folder) / "rest.xml"]
        code, seconds, soak = run_suite(full_soak=not args.quick, ledger=ledger, junit=junit)
        rows = (
            [json.loads(line) for line in ledger.read_text().splitlines()]
            if ledger.exists()
            else []
        )
        outcome = results(junit)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(render(rows, outcome, seconds, soak, code), encoding="utf-8")
    print(f"wrote {args.out}")
    return code


if __name__ == "__main__":
    raise SystemExit(main())
