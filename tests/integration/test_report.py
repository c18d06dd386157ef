"""The weekly report against the real store (SQLite and Postgres, via conftest's `sessions`).

Rows are inserted directly as the sampler would record them; every expected number is
recomputed here from the inserted rows, independently of leakwatch's code (scipy's
binomial Wilson interval for equal weights, the Kish formula written out otherwise).
"""

import itertools
import json
import math
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from scipy.stats import binomtest
from sqlmodel import select

from leakwatch.core.pricing import Price
from leakwatch.core.weeks import IsoWeek
from leakwatch.pipeline.report import build_report, write_report
from leakwatch.store.db import SessionFactory, transaction
from leakwatch.store.models import (
    Alert,
    AlertTransition,
    BadLineCount,
    SampledEvent,
    SamplingRun,
    VolumeCount,
    WeeklyReport,
)

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
_ids = itertools.count()


def sample(
    ts: datetime,
    outcome: str,
    *,
    source: str = "gateway",
    event_type: str = "api_request",
    customer_id: str = "acme",
    weight: float = 1.0,
    quantity: float | None = None,
) -> SampledEvent:
    n = next(_ids)
    return SampledEvent(
        source=source,
        transaction_id=f"txn-{n:06d}",
        payload_hash=f"{n:032x}",
        customer_id=customer_id,
        event_type=event_type,
        event_timestamp=ts,
        weight=weight,
        quantity=quantity,
        outcome=outcome,
        sampled_at=ts + timedelta(hours=1),
    )


def insert(sessions: SessionFactory, rows: list[Any]) -> None:
    with transaction(sessions) as session:
        session.add_all(rows)


def wilson(successes: int, n: int) -> tuple[float, float]:
    ci = binomtest(successes, n).proportion_ci(confidence_level=0.95, method="wilson")
    return float(ci.low), float(ci.high)


def kish_wilson(leak_w: float, decided_w: float, decided_w2: float) -> tuple[float, float]:
    p = leak_w / decided_w
    n = decided_w**2 / decided_w2
    z = 1.959963984540054
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def test_report_numbers_equal_an_independent_computation(
    sessions: SessionFactory, tmp_path: Path
) -> None:
    week = IsoWeek(2026, 47)  # Mon 16 Nov – Sun 22 Nov 2026, CET (UTC+1)
    start, end = week.bounds_utc(BERLIN)
    assert start == datetime(2026, 11, 15, 23, 0, tzinfo=UTC)
    mid = start + timedelta(days=3)
    rows: list[Any] = []
    # gateway/api_request, equal weights: 1000 decided, 9 leaking, 5 pending, 2 errors.
    api: list[tuple[str, str]] = (
        [("matched", "acme")] * 991
        + [("unmatched_customer", "acme-eu")] * 6
        + [("unmatched_customer", "globex")] * 1
        + [("missing", "acme")] * 2
        + [("pending", "acme")] * 5
        + [("error", "acme")] * 2
    )
    rows += [sample(mid + timedelta(seconds=i), o, customer_id=c) for i, (o, c) in enumerate(api)]
    # gateway/gpu_seconds, stratified: two weights, per-unit price on `seconds`.
    gpu = (
        [("matched", 2.0, 10.0)] * 150
        + [("matched", 8.0, 30.0)] * 50
        + [("unmatched_metric", 2.0, 40.0)] * 3
        + [("mismatch", 8.0, 20.0)] * 2
    )
    rows += [
        sample(mid, o, event_type="gpu_seconds", customer_id="initech", weight=w, quantity=q)
        for o, w, q in gpu
    ]
    # Outside the week by one second on each side: must not count.
    rows += [
        sample(start - timedelta(seconds=1), "missing"),
        sample(end, "missing"),
        sample(end + timedelta(days=2), "missing"),
    ]
    # The previous week: 2 leaks in 400.
    prev_mid = mid - timedelta(days=7)
    rows += [sample(prev_mid, "matched") for _ in range(398)]
    rows += [sample(prev_mid, "missing") for _ in range(2)]
    # Volume: 24,000 api events and 2,400 gpu events per UTC day, 36,000 seconds per day.
    for offset in range(-1, 8):
        day = date(2026, 11, 15) + timedelta(days=offset)
        rows.append(VolumeCount(source="gateway", event_type="api_request", day=day, events=24_000))
        rows.append(
            VolumeCount(
                source="gateway",
                event_type="gpu_seconds",
                day=day,
                events=2_400,
                quantity_sum=36_000.0,
            )
        )
    rows.append(
        VolumeCount(
            source="gateway", event_type="api_request", day=date(2026, 11, 8), events=24_000
        )
    )
    rows += [
        BadLineCount(source="gateway", reason="not_json", day=date(2026, 11, 17), count=7),
        BadLineCount(source="gateway", reason="no_transaction_id", day=date(2026, 11, 22), count=2),
        BadLineCount(source="gateway", reason="not_json", day=date(2026, 11, 23), count=100),
    ]
    rows += [
        SamplingRun(
            started_at=start + timedelta(minutes=15 * i),
            status="finished",
            search_requests=3,
            search_rate_limited=1 if i % 10 == 0 else 0,
        )
        for i in range(600)
    ]
    rows.append(SamplingRun(started_at=mid, status="failed", search_errors=4))
    insert(sessions, rows)
    with transaction(sessions) as session:
        alert = Alert(rule_name="leak rate by event type", scope="event_type=api_request")
        session.add(alert)
        session.flush()
        assert alert.id is not None
        session.add_all(
            [
                AlertTransition(alert_id=alert.id, episode=1, transition="fire", at=mid),
                AlertTransition(
                    alert_id=alert.id, episode=1, transition="resolve", at=mid + timedelta(days=1)
                ),
                AlertTransition(
                    alert_id=alert.id, episode=2, transition="fire", at=end + timedelta(hours=1)
                ),
            ]
        )

    content = build_report(
        sessions,
        week="2026-W47",
        now=datetime(2026, 11, 23, 9, 0, tzinfo=UTC),
        timezone="Europe/Berlin",
        prices={"api_request": Price(0.002), "gpu_seconds": Price(0.0001, "seconds")},
        checks_every=timedelta(minutes=15),
    )

    segments = {(s.source, s.event_type): s for s in content.segments}
    api_seg = segments["gateway", "api_request"]
    assert (api_seg.sampled, api_seg.decided, api_seg.leaking) == (1007, 998 + 2, 9)
    assert api_seg.leak_rate is not None
    assert api_seg.leak_rate.rate == pytest.approx(9 / 1000)
    lo, hi = wilson(9, 1000)
    assert api_seg.leak_rate.interval.lo == pytest.approx(lo)
    assert api_seg.leak_rate.interval.hi == pytest.approx(hi)
    # Berlin's week covers 1 h of Sun 15 Nov UTC, all of 16–21, 23 h of Sun 22 Nov.
    assert api_seg.volume_events == pytest.approx(7 * 24_000)
    assert api_seg.estimated_leaked_events is not None
    assert api_seg.estimated_leaked_events.point == pytest.approx(9 / 1000 * 168_000)
    assert api_seg.estimated_leaked_events.hi == pytest.approx(hi * 168_000)
    assert api_seg.revenue_at_risk is not None
    assert api_seg.revenue_at_risk.point == pytest.approx(9 / 1000 * 168_000 * 0.002)
    by_outcome = {o.outcome: o for o in api_seg.outcomes}
    assert by_outcome["unmatched_customer"].count == 7
    assert by_outcome["pending"].count == 5 and by_outcome["pending"].rate is None
    assert api_seg.previous_leak_rate is not None
    # The previous week holds its 2 of 400 plus the sample 1 s before this week began.
    assert api_seg.previous_leak_rate.rate == pytest.approx(3 / 401)
    assert api_seg.leak_rate_change_pp == pytest.approx((9 / 1000 - 3 / 401) * 100)
    assert api_seg.main_cause is not None
    assert api_seg.main_cause.customer_id == "acme-eu"

    gpu_seg = segments["gateway", "gpu_seconds"]
    leak_w = 3 * 2.0 + 2 * 8.0
    decided_w = 150 * 2.0 + 50 * 8.0 + leak_w
    decided_w2 = 153 * 4.0 + 52 * 64.0
    assert gpu_seg.leak_rate is not None
    assert gpu_seg.leak_rate.rate == pytest.approx(leak_w / decided_w)
    k_lo, k_hi = kish_wilson(leak_w, decided_w, decided_w2)
    assert gpu_seg.leak_rate.interval.lo == pytest.approx(k_lo)
    assert gpu_seg.leak_rate.interval.hi == pytest.approx(k_hi)
    q_leak = 3 * 2.0 * 40.0 + 2 * 8.0 * 20.0
    q_decided = 150 * 2.0 * 10.0 + 50 * 8.0 * 30.0 + q_leak
    week_seconds = 7 * 36_000.0
    assert gpu_seg.leaked_quantity is not None
    assert gpu_seg.leaked_quantity.point == pytest.approx(q_leak / q_decided * week_seconds)
    assert gpu_seg.revenue_at_risk is not None
    assert gpu_seg.revenue_at_risk.point == pytest.approx(
        q_leak / q_decided * week_seconds * 0.0001
    )

    assert content.totals.revenue_at_risk is not None
    assert content.totals.revenue_at_risk.point == pytest.approx(
        api_seg.revenue_at_risk.point + gpu_seg.revenue_at_risk.point
    )
    # Health: bad lines on the week's dates only; cycles started in the week.
    assert {(b.reason, b.count) for b in content.health.bad_lines} == {
        ("not_json", 7),
        ("no_transaction_id", 2),
    }
    assert content.health.cycles_run == 601
    assert content.health.cycles_failed == 1
    assert content.health.cycles_expected == 672
    assert content.health.cycles_missed == 71
    assert content.health.search_requests == 1800
    assert content.health.search_rate_limited == 60
    assert content.health.search_errors == 4
    assert (content.alerts_opened, content.alerts_resolved) == (1, 1)
    assert set(content.examples) == {
        "missing",
        "unmatched_customer",
        "unmatched_metric",
        "mismatch",
    }
    assert all(1 <= len(v) <= 3 for v in content.examples.values())
    assert content.top_customers[0].customer_id == "initech"  # heaviest leaked weight
    # Trend: 8 weeks ending with the report week.
    assert [p.week for p in content.trend][-2:] == ["2026-W46", "2026-W47"]
    assert content.trend[-2].decided == 401
    assert content.trend[0].decided == 0

    assert content.summary.startswith("About 0.9% (0.5–1.7%) of api_request events")
    assert "last week" in content.summary
    assert "≈ 1,500 events" in content.summary
    assert "≈ $3.02 at list price" in content.summary
    assert "Main cause: unknown customer alias `acme-eu`" in content.summary

    with transaction(sessions) as session:
        saved = list(session.exec(select(WeeklyReport)).all())
    assert [r.week for r in saved] == ["2026-W47"]
    assert saved[0].content["summary"] == content.summary

    paths = write_report(content, tmp_path)
    assert sorted(p.suffix for p in paths) == [".html", ".json", ".md", ".png"]
    as_json = json.loads((tmp_path / "leakage-2026-W47.json").read_text())
    assert as_json["segments"][0]["leak_rate"]["rate"] == pytest.approx(9 / 1000)
    assert content.summary in (tmp_path / "leakage-2026-W47.md").read_text()


def test_build_twice_keeps_one_row(sessions: SessionFactory) -> None:
    insert(sessions, [sample(datetime(2026, 11, 18, tzinfo=UTC), "matched")])
    for _ in range(2):
        build_report(
            sessions,
            week="2026-W47",
            now=datetime(2026, 11, 30, tzinfo=UTC),
            timezone="UTC",
            prices={},
            checks_every=None,
        )
    with transaction(sessions) as session:
        assert len(session.exec(select(WeeklyReport)).all()) == 1


@pytest.mark.parametrize(
    ("zone", "week", "inside", "outside"),
    [
        # New York leaves DST on Sun 1 Nov 2026: W44 runs 04:00 UTC Mon 26 Oct to
        # 05:00 UTC Mon 2 Nov (169 h).
        (
            NEW_YORK,
            "2026-W44",
            [
                datetime(2026, 10, 26, 4, 0, tzinfo=UTC),
                datetime(2026, 11, 2, 4, 59, 59, tzinfo=UTC),
            ],
            [
                datetime(2026, 10, 26, 3, 59, 59, tzinfo=UTC),
                datetime(2026, 11, 2, 5, 0, tzinfo=UTC),
            ],
        ),
        # Berlin leaves DST on Sun 25 Oct 2026: W43 runs 22:00 UTC Sun 18 Oct to
        # 23:00 UTC Sun 25 Oct.
        (
            BERLIN,
            "2026-W43",
            [
                datetime(2026, 10, 18, 22, 0, tzinfo=UTC),
                datetime(2026, 10, 25, 22, 59, 59, tzinfo=UTC),
            ],
            [
                datetime(2026, 10, 18, 21, 59, 59, tzinfo=UTC),
                datetime(2026, 10, 25, 23, 0, tzinfo=UTC),
            ],
        ),
        # Berlin enters DST on Sun 29 Mar 2026: W13 is 167 h long.
        (
            BERLIN,
            "2026-W13",
            [
                datetime(2026, 3, 22, 23, 0, tzinfo=UTC),
                datetime(2026, 3, 29, 21, 59, 59, tzinfo=UTC),
            ],
            [
                datetime(2026, 3, 22, 22, 59, 59, tzinfo=UTC),
                datetime(2026, 3, 29, 22, 0, tzinfo=UTC),
            ],
        ),
    ],
)
def test_samples_fall_in_the_local_week_of_their_event_timestamp(
    sessions: SessionFactory,
    zone: ZoneInfo,
    week: str,
    inside: list[datetime],
    outside: list[datetime],
) -> None:
    insert(sessions, [sample(ts, "missing") for ts in inside])
    insert(sessions, [sample(ts, "matched") for ts in outside])
    content = build_report(
        sessions,
        week=week,
        now=datetime(2026, 12, 1, tzinfo=UTC),
        timezone=zone.key,
        prices={},
        checks_every=timedelta(hours=1),
    )
    assert (content.totals.sampled, content.totals.leaking) == (len(inside), len(inside))
    hours = (content.end_utc - content.start_utc) / timedelta(hours=1)
    assert content.health.cycles_expected == int(hours)


def test_an_empty_week_says_no_data(sessions: SessionFactory, tmp_path: Path) -> None:
    # Data in other weeks must not leak into the empty one.
    insert(sessions, [sample(datetime(2026, 11, 10, tzinfo=UTC), "missing")])
    content = build_report(
        sessions,
        week="2026-W47",
        now=datetime(2026, 11, 23, 9, tzinfo=UTC),
        timezone="UTC",
        prices={"api_request": Price(0.002)},
        checks_every=timedelta(minutes=15),
    )
    assert not content.has_data
    assert content.summary.startswith("No data for 2026-W47")
    assert "0 of 672 expected check cycles ran" in content.summary
    assert content.totals.leak_rate is None
    assert content.totals.revenue_at_risk is None
    assert content.segments == []
    paths = write_report(content, tmp_path)
    html = (tmp_path / "leakage-2026-W47.html").read_text()
    assert "No data for 2026-W47" in html
    assert len(paths) == 4
