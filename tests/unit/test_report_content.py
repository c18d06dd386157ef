"""Pure parts of the weekly report: weeks, prices, wording, and content from query rows."""

import re
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from leakwatch.core.exposure import VolumeRow, day_share
from leakwatch.core.formatting import format_count, format_money, format_rate_interval
from leakwatch.core.pricing import Price, parse_prices
from leakwatch.core.report_content import (
    Example,
    OutcomeRow,
    ReportContent,
    ReportInputs,
    build_content,
)
from leakwatch.core.stats import Interval, RateEstimate
from leakwatch.core.weeks import IsoWeek
from leakwatch.views.report_render import render_html, render_markdown

BERLIN = ZoneInfo("Europe/Berlin")


@pytest.mark.parametrize(
    ("week", "zone", "start", "hours"),
    [
        ("2026-W47", "UTC", datetime(2026, 11, 16, tzinfo=UTC), 168),
        ("2026-W47", "Europe/Berlin", datetime(2026, 11, 15, 23, tzinfo=UTC), 168),
        ("2026-W44", "America/New_York", datetime(2026, 10, 26, 4, tzinfo=UTC), 169),
        ("2026-W11", "America/New_York", datetime(2026, 3, 9, 4, tzinfo=UTC), 168),
        ("2026-W10", "America/New_York", datetime(2026, 3, 2, 5, tzinfo=UTC), 167),
        ("2026-W13", "Europe/Berlin", datetime(2026, 3, 22, 23, tzinfo=UTC), 167),
        ("2020-W53", "Asia/Tokyo", datetime(2020, 12, 27, 15, tzinfo=UTC), 168),
    ],
)
def test_week_bounds_in_utc(week: str, zone: str, start: datetime, hours: int) -> None:
    lo, hi = IsoWeek.parse(week).bounds_utc(ZoneInfo(zone))
    assert lo == start
    assert hi - lo == timedelta(hours=hours)


@pytest.mark.parametrize("text", ["2026-47", "2026-W7", "2025-W53", "W47", ""])
def test_bad_weeks_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="week"):
        IsoWeek.parse(text)


@pytest.mark.parametrize(
    ("now", "zone", "expected"),
    [
        (datetime(2026, 11, 23, 8, 0, tzinfo=UTC), "Europe/Berlin", "2026-W47"),
        # Sunday 23:30 UTC is already Monday in Berlin: the week just ended is W47.
        (datetime(2026, 11, 22, 23, 30, tzinfo=UTC), "Europe/Berlin", "2026-W47"),
        (datetime(2026, 11, 22, 23, 30, tzinfo=UTC), "UTC", "2026-W46"),
        (datetime(2027, 1, 4, 12, 0, tzinfo=UTC), "UTC", "2026-W53"),
    ],
)
def test_default_week_is_the_last_complete_one(now: datetime, zone: str, expected: str) -> None:
    assert str(IsoWeek.last_complete(now, ZoneInfo(zone))) == expected


def test_utc_day_fractions_split_every_day_between_adjacent_weeks() -> None:
    weeks = [IsoWeek(2026, w).bounds_utc(BERLIN) for w in range(40, 48)]
    now = datetime(2026, 12, 1, tzinfo=UTC)
    day = date(2026, 10, 5)
    while day < date(2026, 11, 15):
        total = sum(day_share(day, lo, hi, now) for lo, hi in weeks)
        assert total == pytest.approx(1.0)
        day += timedelta(days=1)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"api_request": 0.002}, {"api_request": Price(0.002)}),
        ({"api_request": 1}, {"api_request": Price(1.0)}),
        (
            {"gpu_seconds": {"per_unit": 0.0004, "property": "seconds"}},
            {"gpu_seconds": Price(0.0004, "seconds")},
        ),
    ],
)
def test_prices_parse(raw: dict[str, object], expected: dict[str, Price]) -> None:
    assert parse_prices(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        {"x": -1},
        {"x": "cheap"},
        {"x": True},
        {"x": {"per_unit": 0.1, "unit": "s"}},
        {"x": {"property": "s"}},
        {"x": {"per_unit": 0.1}},
        {"x": {"price": 0.0004, "per_unit_property": "seconds"}},
        {"x": float("nan")},
    ],
)
def test_bad_prices_name_the_entry(raw: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=r"report\.prices\.x"):
        parse_prices(raw)


@pytest.mark.parametrize(
    ("rate", "lo", "hi", "text"),
    [
        (0.0083, 0.0061, 0.011, "0.8% (0.6–1.1%)"),
        (0.00061, 0.0002, 0.0015, "0.06% (0.02–0.15%)"),
        (0.0, 0.0, 0.0038, "0.0% (0.0–0.4%)"),
        (0.25, 0.2, 0.31, "25.0% (20.0–31.0%)"),
    ],
)
def test_rate_wording(rate: float, lo: float, hi: float, text: str) -> None:
    estimate = RateEstimate(0, 0, rate, Interval(lo, hi), 0)
    assert format_rate_interval(estimate) == text


@pytest.mark.parametrize(
    ("value", "count", "money"),
    [
        (41_234.5, "41,000", "$41,000"),
        (82.3, "82", "$82"),
        (8.234, "8", "$8.23"),
        (0, "0", "$0.00"),
    ],
)
def test_amount_wording(value: float, count: str, money: str) -> None:
    assert format_count(value) == count
    assert format_money(value) == money


def _inputs(rows: list[OutcomeRow], volume: list[VolumeRow]) -> ReportInputs:
    week = IsoWeek(2026, 47)
    return ReportInputs(
        weeks=tuple(week.shifted(-i) for i in reversed(range(8))),
        outcome_rows=rows,
        volume_rows=volume,
        bad_lines=[],
        cycles=[],
        alert_transitions=[],
        top_customers=[],
        leak_keys=[],
        examples=[],
    )


def test_zero_leaks_is_reported_with_an_upper_bound_not_as_zero() -> None:
    rows = [OutcomeRow(7, "gw", "api_request", "matched", 1000, 1000.0, 1000.0)]
    content = build_content(
        _inputs(rows, []),
        timezone=ZoneInfo("UTC"),
        prices={},
        generated_at=datetime(2026, 11, 23, tzinfo=UTC),
        checks_every=None,
    )
    assert content.summary == (
        "No unbilled usage found last week: none of 1,000 checked events leaked; "
        "the leak rate is below 0.4% (95% upper bound)."
    )


def test_only_pending_samples_give_no_verdict() -> None:
    rows = [OutcomeRow(7, "gw", "api_request", "pending", 12, 12.0, 12.0)]
    content = build_content(
        _inputs(rows, []),
        timezone=ZoneInfo("UTC"),
        prices={},
        generated_at=datetime(2026, 11, 23, tzinfo=UTC),
        checks_every=None,
    )
    assert content.has_data
    assert content.summary.startswith("No verdict yet for 2026-W47")
    assert content.segments[0].leak_rate is None


def test_a_week_other_than_last_is_named() -> None:
    rows = [
        OutcomeRow(7, "gw", "api_request", "matched", 99, 99.0, 99.0),
        OutcomeRow(7, "gw", "api_request", "missing", 1, 1.0, 1.0),
    ]
    volume = [VolumeRow("gw", "api_request", date(2026, 11, 16), 10_000, 0.0)]
    content = build_content(
        _inputs(rows, volume),
        timezone=ZoneInfo("UTC"),
        prices={"api_request": Price(0.01)},
        generated_at=datetime(2026, 12, 14, tzinfo=UTC),
        checks_every=None,
    )
    assert content.summary.startswith(
        "About 1.0% (0.2–5.4%) of api_request events were not billed in week 2026-W47: "
        "≈ 100 events, ≈ $1.00 at list price. Main cause: events never reached Metronome."
    )
    # 100 decided samples is the threshold at which the summary stops warning.
    assert "Based on only" not in content.summary


def _two_weeks(previous_missing: int, current_missing: int) -> list[OutcomeRow]:
    """400 unit-weight samples a week (weight_sq_sum = count for weights of 1)."""
    counts = {
        (6, "matched"): 400 - previous_missing,
        (6, "missing"): previous_missing,
        (7, "matched"): 400 - current_missing,
        (7, "missing"): current_missing,
    }
    return [
        OutcomeRow(week, "gw", "api_request", outcome, n, float(n), float(n))
        for (week, outcome), n in counts.items()
        if n > 0
    ]


@pytest.mark.parametrize(
    ("previous_missing", "current_missing", "words"),
    [
        (0, 40, "The week before: 0.0% (0.0–1.0%), clearly up."),
        (40, 2, "The week before: 10.0% (7.4–13.3%), clearly down."),
        (8, 12, "The week before: 2.0% (1.0–3.9%), no clear change."),
    ],
)
def test_week_over_week_is_called_up_or_down_only_when_intervals_part(
    previous_missing: int, current_missing: int, words: str
) -> None:
    rows = _two_weeks(previous_missing, current_missing)
    content = build_content(
        _inputs(rows, []),
        timezone=ZoneInfo("UTC"),
        prices={},
        generated_at=datetime(2026, 11, 23, tzinfo=UTC),
        checks_every=None,
    )
    assert content.summary.endswith(words), content.summary


def test_an_unpriced_segment_leaking_far_worse_is_named_in_the_summary() -> None:
    rows = [
        OutcomeRow(7, "gw", "api_request", "matched", 970, 970.0, 970.0),
        OutcomeRow(7, "gw", "api_request", "missing", 30, 30.0, 30.0),
        OutcomeRow(7, "gw", "storage_gb", "unmatched_metric", 14, 14.0, 14.0),
    ]
    volume = [VolumeRow("gw", "api_request", date(2026, 11, 16), 100_000, 0.0)]
    content = build_content(
        _inputs(rows, volume),
        timezone=ZoneInfo("UTC"),
        prices={"api_request": Price(0.01)},
        generated_at=datetime(2026, 11, 23, tzinfo=UTC),
        checks_every=None,
    )
    assert content.summary.startswith("About 3.0% (2.1–4.3%) of api_request events")
    assert (
        "Worst rate: 100.0% (78.5–100.0%) of storage_gb events "
        "(events that match no billable metric)." in content.summary
    ), content.summary


def test_a_week_in_progress_expects_only_the_cycles_due_so_far() -> None:
    rows = [OutcomeRow(7, "gw", "api_request", "matched", 10, 10.0, 10.0)]
    content = build_content(
        _inputs(rows, []),
        timezone=ZoneInfo("UTC"),
        prices={},
        # W47 starts Monday 16 Nov 00:00 UTC; two and a half days later:
        generated_at=datetime(2026, 11, 18, 12, tzinfo=UTC),
        checks_every=timedelta(hours=1),
    )
    assert content.health.cycles_expected == 60


def test_the_money_comes_first_in_the_segment_table_and_only_ids_are_code() -> None:

    rows = [
        OutcomeRow(7, "gw", "api_request", "matched", 970, 970.0, 970.0),
        OutcomeRow(7, "gw", "api_request", "missing", 30, 30.0, 30.0),
    ]
    volume = [VolumeRow("gw", "api_request", date(2026, 11, 16), 100_000, 0.0)]
    inputs = _inputs(rows, volume)
    inputs = replace(
        inputs,
        examples=[
            Example(
                "missing",
                "t-42",
                "gw",
                "api_request",
                "acme",
                datetime(2026, 11, 17, tzinfo=UTC),
                "",
            )
        ],
    )
    content = build_content(
        inputs,
        timezone=ZoneInfo("UTC"),
        prices={"api_request": Price(0.01)},
        generated_at=datetime(2026, 11, 23, tzinfo=UTC),
        checks_every=None,
    )
    page = render_html(content, None)
    table = page[page.index("By source and event type") :]
    headers = re.findall(r"<th>([^<]*)</th>", table)[:3]
    # A phone shows about three columns before the table scrolls.
    assert headers == ["event type", "leak rate (95% CI)", "revenue at risk"]
    markdown = render_markdown(content)
    assert "- **missing**: `t-42` (gw/api_request, acme)" in markdown
    assert "<code>t-42</code> (gw/api_request, acme)" in page


def _content(
    rows: list[OutcomeRow],
    *,
    volume: tuple[VolumeRow, ...] = (),
    prices: dict[str, Price] | None = None,
    at: datetime = datetime(2026, 11, 23, tzinfo=UTC),
) -> ReportContent:
    """W47's report made at `at` (by default the Monday after it) in UTC, no cycle target."""
    return build_content(
        _inputs(rows, list(volume)),
        timezone=ZoneInfo("UTC"),
        prices=prices or {},
        generated_at=at,
        checks_every=None,
    )


def test_the_week_in_progress_is_marked_partial_in_title_and_summary() -> None:
    rows = [
        OutcomeRow(7, "gw", "api_request", "matched", 970, 970.0, 970.0),
        OutcomeRow(7, "gw", "api_request", "missing", 30, 30.0, 30.0),
    ]
    content = _content(rows, at=datetime(2026, 11, 18, 12, tzinfo=UTC))
    assert content.partial
    assert content.to_dict()["through_day"] == "2026-11-18"
    assert "were not billed this week so far (partial week, through Wed 18 Nov)" in (
        content.summary
    )
    markdown = render_markdown(content)
    assert markdown.startswith(
        "# Leakage report 2026-W47 (Mon 16 Nov – Sun 22 Nov 2026, UTC; "
        "partial week, through Wed 18 Nov)"
    )
    assert "<title>Leakage report 2026-W47 (partial week)</title>" in render_html(content, None)


def test_a_finished_week_is_not_marked_partial() -> None:
    rows = [OutcomeRow(7, "gw", "api_request", "matched", 1000, 1000.0, 1000.0)]
    content = _content(rows)
    assert not content.partial
    assert content.through_day is None
    assert "partial" not in render_markdown(content)


def test_a_handful_of_samples_says_so_first_and_gives_no_rate() -> None:
    rows = [
        OutcomeRow(7, "gw", "api_request", "missing", 7, 7.0, 7.0),
    ]
    content = _content(
        rows,
        volume=(VolumeRow("gw", "api_request", date(2026, 11, 16), 10_000, 0.0),),
        prices={"api_request": Price(0.01)},
    )
    assert content.summary.startswith(
        "Only 7 samples of api_request events decided last week: too few to estimate a "
        "rate; 7 of them leaked. Main cause: events never reached Metronome."
    ), content.summary
    assert "About" not in content.summary
    assert "100.0%" not in content.summary


def test_fewer_than_a_hundred_samples_lead_with_the_count() -> None:
    rows = [
        OutcomeRow(7, "gw", "api_request", "matched", 45, 45.0, 45.0),
        OutcomeRow(7, "gw", "api_request", "missing", 5, 5.0, 5.0),
    ]
    content = _content(rows)
    assert content.summary.startswith("Based on only 50 decided samples, about 10.0% ("), (
        content.summary
    )
