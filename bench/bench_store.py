"""Benchmark the store: recording outcomes, and `status` over millions of them.

Two targets from issue 5, each printed as a ratio to a baseline measured in the same
run on the same Postgres:

1. Recording (the cycle's write path: insert the draw as pending, then write the
   verdicts by primary key) must reach ≥ 20,000 outcomes/s and take ≤ 3 × a bare
   `COPY` of the same final rows into the same table.
2. `status` (build_status over the whole window) over 5 M stored outcomes must take
   ≤ 2 × the bare GROUP BY SQL that computes the same counts.

3. A cycle's store work (issue 15) — the statistics check, the "already stored?"
   lookup of a 500-event draw, the due re-checks loaded and updated, the draw recorded,
   the metrics refresh and one alert pass — on `--cycle-rows` stored outcomes (5 M:
   30 days at one sampling rate; statistics never taken) must take ≤ 1.5 × the same
   on 50 k (7 hours at that rate), the two stores side by side, their cycles taken in
   turn. Each part's ratio is printed too.

Run: `.venv/bin/python bench/bench_store.py [--quick] [--record N] [--rows N]
[--cycle-rows N] [--skip-recording] [--skip-status]`.
Creates and drops its own databases. Exits 1 if a target is missed.
"""

import argparse
import io
import json
import logging
import random
import statistics
import sys
import time
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import structlog

from leakwatch.core.classify import Verdict
from leakwatch.core.events import DrawnEvent, Outcome, SourceEvent
from leakwatch.store.db import make_engine, session_factory, transaction, upgrade
from leakwatch.store.outcomes import (
    NEW_ROW,
    RecheckPolicy,
    due_rows,
    record_samples,
    record_verdicts,
    sample_row,
    verdict_update,
)
from leakwatch.views.status import build_status

ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
NOW = datetime(2026, 11, 20, 12, tzinfo=UTC)
OUTCOMES = [Outcome.MATCHED] * 90 + [
    Outcome.MISSING,
    Outcome.UNMATCHED_CUSTOMER,
    Outcome.UNMATCHED_METRIC,
    Outcome.DUPLICATE,
    Outcome.MISMATCH,
    Outcome.PENDING,
]
TYPES = ["api_request", "gpu_seconds", "tokens", "storage_gb"]
COLUMNS = (
    "source, transaction_id, payload_hash, customer_id, event_type, event_timestamp, "
    "properties, weight, stratum, quantity, outcome, reason, evidence, matched_customer_id, "
    "matched_customer_name, matched_metrics, duplicate_count, differing_fields, healed, "
    "attempts, sampled_at, first_checked_at, last_checked_at, decided_at, next_check_at, run_id"
)


def samples(n: int, rng: random.Random, offset: int = 0) -> list[DrawnEvent]:
    """Drawn events as the cycle hands them to recording: already hashed (the cycle's
    identity check before the lookup computes each payload hash)."""
    drawn = [
        DrawnEvent(
            source="gateway",
            event=SourceEvent(
                transaction_id=f"txn-{offset + i:09d}",
                customer_id=f"cust-{rng.randrange(2000)}",
                event_type=rng.choice(TYPES),
                timestamp=NOW - timedelta(seconds=rng.randrange(30 * 86400)),
                properties={"endpoint": "/v1/users", "n": rng.randrange(100)},
            ),
        )
        for i in range(n)
    ]
    for sample in drawn:
        _ = sample.event.payload_hash
    return drawn


def verdict_for(rng: random.Random) -> Verdict:
    outcome = rng.choice(OUTCOMES)
    return Verdict(
        outcome=outcome,
        reason=f"bench {outcome.value}",
        evidence={"rule": outcome.value, "items_found": 1, "matched_metrics": ["API requests"]},
    )


def time_recording(url: str, drawn: list[DrawnEvent], verdicts: list[Verdict]) -> float:
    """The cycle's write path for new samples: rows built from verdicts, inserted by COPY."""
    engine = make_engine(url)
    sessions = session_factory(engine)
    policy = RecheckPolicy(timedelta(minutes=15), timedelta(hours=6))
    started = time.perf_counter()
    for start in range(0, len(drawn), 1000):
        rows = []
        for sample, verdict in zip(drawn[start : start + 1000], verdicts[start:], strict=False):
            row = sample_row(sample, now=NOW, run_id=None, quantity_properties={})
            row.update(
                verdict_update(NEW_ROW, verdict, now=NOW, recheck=policy, counted_attempt=True)
            )
            del row["id"]
            rows.append(row)
        with transaction(sessions) as session:
            record_samples(session, rows)
    elapsed = time.perf_counter() - started
    engine.dispose()
    return elapsed


def time_rechecks(url: str, verdicts: list[Verdict]) -> tuple[int, float]:
    """Re-checks of recorded rows: load the due rows, write new verdicts by primary key."""
    engine = make_engine(url)
    sessions = session_factory(engine)
    policy = RecheckPolicy(timedelta(minutes=15), timedelta(hours=6))
    started = time.perf_counter()
    with transaction(sessions) as session:
        rows = due_rows(session, now=NOW + timedelta(days=1), limit=len(verdicts))
    updates = [
        verdict_update(row, verdicts[i], now=NOW, recheck=policy, counted_attempt=True)
        for i, row in enumerate(rows)
    ]
    for start in range(0, len(updates), 1000):
        with transaction(sessions) as session:
            record_verdicts(session, updates[start : start + 1000])
    elapsed = time.perf_counter() - started
    engine.dispose()
    return len(rows), elapsed


def copy_text(drawn: list[DrawnEvent], verdicts: list[Verdict]) -> bytes:
    out = io.StringIO()
    stamp = NOW.isoformat()
    for sample, verdict in zip(drawn, verdicts, strict=True):
        e = sample.event
        fields = [
            sample.source,
            e.transaction_id,
            e.payload_hash,
            e.customer_id,
            e.event_type,
            e.timestamp.isoformat(),
            json.dumps(dict(e.properties)),
            "1.0",
            "\\N",
            "\\N",
            verdict.outcome.value,
            verdict.reason,
            json.dumps(verdict.evidence),
            "\\N",
            "\\N",
            json.dumps(["API requests"]),
            "0",
            "[]",
            "f",
            "1",
            stamp,
            stamp,
            stamp,
            stamp,
            "\\N",
            "\\N",
        ]
        out.write("\t".join(f.replace("\\", "\\\\") if f != "\\N" else f for f in fields) + "\n")
    return out.getvalue().encode()


def time_copy(url: str, payload: bytes) -> float:
    with psycopg.connect(url.replace("+psycopg", "")) as conn:
        started = time.perf_counter()
        with (
            conn.cursor() as cursor,
            cursor.copy(f"COPY sampled_event ({COLUMNS}) FROM STDIN") as copy,
        ):
            copy.write(payload)
        conn.commit()
        return time.perf_counter() - started


def truncate(url: str) -> None:
    with psycopg.connect(url.replace("+psycopg", "")) as conn:
        conn.execute("TRUNCATE sampled_event, sampling_run RESTART IDENTITY CASCADE")
        conn.commit()


def fill(url: str, rows: int, *, per_second: float | None = None, analyze: bool = True) -> None:
    """Load `rows` outcomes quickly with server-side generate_series.

    `sampled_at`: within the day before NOW; or, with `per_second`, cycles every 15
    minutes back from NOW, each with its share of samples (as long a history as the
    rows make).
    """
    back = "g %% 86400"
    if per_second is not None:  # samples share their cycle's time, one cycle per 15 min
        back = f"div(g, {max(1, round(per_second * CYCLE_EVERY_S))}) * {CYCLE_EVERY_S}"
    with psycopg.connect(url.replace("+psycopg", "")) as conn:
        conn.execute(
            f"""
            INSERT INTO sampled_event ({COLUMNS})
            SELECT 'gateway', 'txn-' || g, md5(g::text), 'cust-' || (g %% 2000),
                   (ARRAY['api_request','gpu_seconds','tokens','storage_gb'])[1 + g %% 4],
                   %(now)s::timestamptz - (g %% 2592000) * interval '1 second',
                   '{{}}'::jsonb, 1.0, NULL, NULL,
                   (ARRAY['matched','matched','matched','matched','matched','matched',
                          'matched','matched','matched','missing','unmatched_customer',
                          'unmatched_metric','duplicate','mismatch','pending'])[1 + g %% 15],
                   '', '{{}}'::jsonb, NULL, NULL, '[]'::jsonb, 0, '[]'::jsonb, false, 1,
                   %(now)s::timestamptz - ({back}) * interval '1 second',
                   NULL, NULL, NULL, NULL, NULL
            FROM generate_series(1, %(rows)s) AS g
            """,
            {"now": NOW, "rows": rows},
        )
        if analyze:
            conn.execute("ANALYZE sampled_event")
        conn.commit()


BARE_STATUS_SQL = [
    "SELECT outcome, count(*), sum(weight), sum(weight*weight) FROM sampled_event "
    "WHERE sampled_at >= %(since)s AND sampled_at < %(until)s GROUP BY outcome",
    "SELECT source, outcome, count(*), sum(weight), sum(weight*weight) FROM sampled_event "
    "WHERE sampled_at >= %(since)s AND sampled_at < %(until)s GROUP BY source, outcome",
    "SELECT event_type, outcome, count(*), sum(weight), sum(weight*weight) FROM sampled_event "
    "WHERE sampled_at >= %(since)s AND sampled_at < %(until)s GROUP BY event_type, outcome",
    "SELECT customer_id, outcome, count(*), sum(weight), sum(weight*weight) FROM sampled_event "
    "WHERE sampled_at >= %(since)s AND sampled_at < %(until)s GROUP BY customer_id, outcome",
]


def time_bare_status(url: str, since: datetime, until: datetime) -> float:
    with psycopg.connect(url.replace("+psycopg", "")) as conn:
        started = time.perf_counter()
        for sql in BARE_STATUS_SQL:
            conn.execute(sql, {"since": since, "until": until}).fetchall()
        return time.perf_counter() - started


def time_status(url: str, window: timedelta) -> float:
    engine = make_engine(url)
    sessions = session_factory(engine)
    started = time.perf_counter()
    view = build_status(sessions, now=NOW + timedelta(seconds=1), window=window)
    elapsed = time.perf_counter() - started
    assert view.overall.sampled > 0
    engine.dispose()
    return elapsed


CYCLE_DRAW = 500
CYCLE_DUE = 150
# One sampling rate for every size: 5 M outcomes are 30 days of it, 50 k are 7 hours —
# history grows by days at the rate a deployment samples, as in the soak.
SAMPLES_PER_SECOND = 5_000_000 / (30 * 86400)
CYCLE_EVERY_S = 900


def time_cycle_store_work(url: str, cycle: int) -> dict[str, float]:
    """One cycle's store work, part by part (seconds), as `CheckCycle` does it."""
    from leakwatch.core.alerting import AlertRule, GroupBy, RateKind
    from leakwatch.daemon.metrics import read_store_snapshot
    from leakwatch.pipeline.alert import evaluate_alerts
    from leakwatch.store.outcomes import count_due, recorded_identities, refresh_statistics_if_stale

    engine = make_engine(url)
    sessions = session_factory(engine)
    now = NOW + timedelta(minutes=15 * cycle)
    rng = random.Random(cycle)
    drawn = samples(CYCLE_DRAW, rng, offset=10_000_000 * (cycle + 1))
    # Half the draw's transaction ids are stored already (the lookup finds them).
    drawn = [
        replace(s, event=replace(s.event, transaction_id=f"txn-{rng.randrange(1, 40_000)}"))
        if i % 2
        else s
        for i, s in enumerate(drawn)
    ]
    policy = RecheckPolicy(timedelta(minutes=15), timedelta(hours=6))
    rules = [
        AlertRule("leak rate", RateKind.LEAK_RATE, 0.05, timedelta(hours=24), 100),
        AlertRule(
            "by type", RateKind.LEAK_RATE, 0.05, timedelta(hours=24), 100, by=GroupBy.EVENT_TYPE
        ),
    ]
    parts: dict[str, float] = {}

    def timed(name: str, work: Any) -> Any:
        started = time.perf_counter()
        value = work()
        parts[name] = time.perf_counter() - started
        return value

    with transaction(sessions) as session:
        timed("statistics", lambda: refresh_statistics_if_stale(session))
    with transaction(sessions) as session:
        timed("lookup", lambda: recorded_identities(session, drawn))
    with transaction(sessions) as session:
        due = timed(
            "due",
            lambda: (count_due(session, now=now), due_rows(session, now=now, limit=CYCLE_DUE))[1],
        )
    rows = []
    for sample in drawn:
        row = sample_row(sample, now=now, run_id=None, quantity_properties={})
        row.update(
            verdict_update(NEW_ROW, verdict_for(rng), now=now, recheck=policy, counted_attempt=True)
        )
        del row["id"]
        rows.append(row)
    with transaction(sessions) as session:
        timed("record", lambda: record_samples(session, rows))
    updates = [
        verdict_update(row, verdict_for(rng), now=now, recheck=policy, counted_attempt=True)
        for row in due
    ]
    with transaction(sessions) as session:
        timed("verdicts", lambda: record_verdicts(session, updates))
    with transaction(sessions) as session:
        timed("metrics", lambda: read_store_snapshot(session, now=now))
    timed("alerts", lambda: evaluate_alerts(sessions, rules, now, deliver=False))
    engine.dispose()
    return parts


CYCLE_RUNS = 7


def bench_cycle_store_work(url: str, large: int, small: int = 50_000) -> bool:
    """Target 3: a cycle's store work on `large` stored outcomes vs on `small`.

    Two stores side by side (this run's database holds the large one), their cycles
    taken in turn: a load that comes and goes on the machine then weighs on both sides
    alike, where measuring one size after the other compared the two loads instead.
    """
    small_url = f"{url}_small"
    with psycopg.connect(ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{small_url.rsplit("/", 1)[1]}"')
    try:
        engine = make_engine(small_url)
        upgrade(engine)
        engine.dispose()
        stores = {small: small_url, large: url}
        for rows, store in stores.items():
            truncate(store)
            started = time.perf_counter()
            fill(store, rows, per_second=SAMPLES_PER_SECOND, analyze=False)
            days = rows / SAMPLES_PER_SECOND / 86400
            elapsed = time.perf_counter() - started
            print(f"loaded {rows:,} outcomes ({days:.1f} days) in {elapsed:.1f}s")
        runs: dict[int, list[dict[str, float]]] = {rows: [] for rows in stores}
        for cycle in range(CYCLE_RUNS):
            for rows, store in stores.items():
                runs[rows].append(time_cycle_store_work(store, cycle))
    finally:
        with psycopg.connect(ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{small_url.rsplit("/", 1)[1]}" WITH (FORCE)')
    figures: dict[int, dict[str, float]] = {}
    for rows, measured in runs.items():
        # The first cycle takes the missing statistics; the steady state is the median.
        first, steady = measured[0], measured[1:]
        figures[rows] = {part: statistics.median(run[part] for run in steady) for part in first}
        figures[rows]["first cycle (takes statistics)"] = sum(first.values())
        figures[rows]["first lookup (fresh statistics)"] = first["lookup"]
    total_small = sum(v for k, v in figures[small].items() if not k.startswith("first"))
    total_large = sum(v for k, v in figures[large].items() if not k.startswith("first"))
    for part in figures[small]:
        a, b = figures[small][part], figures[large][part]
        print(
            f"    {part:<32} {b * 1000:9.1f} ms at {large:,} vs {a * 1000:8.1f} ms ({b / a:6.2f}×)"
        )
    ratio = total_large / total_small
    ok = ratio <= 1.5
    print(
        f"a cycle's store work on {large:,} outcomes: {total_large * 1000:.1f} ms; on {small:,}: "
        f"{total_small * 1000:.1f} ms; ratio {ratio:.2f} (target ≤ 1.5) {'PASS' if ok else 'FAIL'}"
    )
    return ok


def best_of(runs: int, measure: Any) -> float:
    return min(measure() for _ in range(runs))


def main() -> int:
    # The alert pass logs each transition; the figures are what this prints.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, a smoke run")
    parser.add_argument("--record", type=int, default=50_000, help="outcomes to record")
    parser.add_argument("--rows", type=int, default=5_000_000, help="stored outcomes for status")
    parser.add_argument("--cycle-rows", type=int, default=5_000_000, help="for the cycle target")
    parser.add_argument("--skip-recording", action="store_true")
    parser.add_argument("--skip-status", action="store_true")
    args = parser.parse_args()
    record_n = 5_000 if args.quick else args.record
    status_rows = 200_000 if args.quick else args.rows

    name = f"leakwatch_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    failures = 0
    try:
        engine = make_engine(url)
        upgrade(engine)
        engine.dispose()
        rng = random.Random(1)
        drawn = samples(record_n, rng)
        verdicts = [verdict_for(rng) for _ in drawn]
        payload = copy_text(drawn, verdicts)

        record_times, copy_times = [], []
        for _ in range(0 if args.skip_recording else 3):
            truncate(url)
            record_times.append(time_recording(url, drawn, verdicts))
            truncate(url)
            copy_times.append(time_copy(url, payload))
        if not args.skip_recording:
            failures += bench_recording(url, drawn, verdicts, rng, record_times, copy_times)
        if not args.skip_status:
            failures += bench_status(url, status_rows)
        cycle_rows = 200_000 if args.quick else args.cycle_rows
        failures += not bench_cycle_store_work(url, cycle_rows)
    finally:
        with psycopg.connect(ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    return 1 if failures else 0


def bench_recording(
    url: str,
    drawn: list[DrawnEvent],
    verdicts: list[Verdict],
    rng: random.Random,
    record_times: list[float],
    copy_times: list[float],
) -> int:
    """Target 1; returns the number of failures."""
    failures = 0
    record_n = len(drawn)
    record_s, copy_s = min(record_times), min(copy_times)
    per_s = record_n / record_s
    ratio = record_s / copy_s
    ok_rate, ok_ratio = per_s >= 20_000, ratio <= 3.0
    failures += (not ok_rate) + (not ok_ratio)
    print(
        f"recording {record_n:,} outcomes: {record_s:.2f}s = {per_s:,.0f} outcomes/s "
        f"(target ≥ 20,000) {'PASS' if ok_rate else 'FAIL'}"
    )
    print(
        f"  bare COPY of the same rows: {copy_s:.2f}s; ratio {ratio:.2f} "
        f"(target ≤ 3.0) {'PASS' if ok_ratio else 'FAIL'}   "
        f"[runs: {', '.join(f'{t:.2f}' for t in record_times)} vs "
        f"{', '.join(f'{t:.2f}' for t in copy_times)}]"
    )

    # Re-checks (pending and unmatched-customer rows looked at again) are updates.
    truncate(url)
    time_recording(url, drawn, verdicts)
    rechecked, recheck_s = time_rechecks(url, [verdict_for(rng) for _ in drawn])
    print(
        f"re-checks: {rechecked:,} due rows loaded and updated in {recheck_s:.2f}s = "
        f"{rechecked / recheck_s:,.0f}/s (informational; no target)"
    )

    return failures


def bench_status(url: str, status_rows: int) -> int:
    """Target 2; returns the number of failures."""
    failures = 0
    truncate(url)
    started = time.perf_counter()
    fill(url, status_rows)
    print(f"loaded {status_rows:,} outcomes in {time.perf_counter() - started:.1f}s")
    window = timedelta(days=2)
    since, until = NOW + timedelta(seconds=1) - window, NOW + timedelta(seconds=1)
    time_status(url, window)  # warm the cache for both
    status_runs = [time_status(url, window) for _ in range(3)]
    bare_runs = [time_bare_status(url, since, until) for _ in range(3)]
    status_s, bare_s = statistics.median(status_runs), statistics.median(bare_runs)
    ratio = status_s / bare_s
    ok = ratio <= 2.0
    failures += not ok
    print(
        f"status over {status_rows:,} outcomes: {status_s:.2f}s; bare GROUP BY SQL: "
        f"{bare_s:.2f}s; ratio {ratio:.2f} (target ≤ 2.0) {'PASS' if ok else 'FAIL'}"
    )
    return failures


if __name__ == "__main__":
    sys.exit(main())
