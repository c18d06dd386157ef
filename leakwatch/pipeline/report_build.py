"""The weekly leakage report: build it from the store, write it, send it.

`build_report` runs the aggregation queries (I/O), computes the content (pure,
`content.py`) and saves it in the WeeklyReport row; `write_report` writes the
Markdown, HTML, JSON and PNG files; `send_report` posts to Slack once per week.
"""

from collections.abc import Mapping
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import structlog

from leakwatch.config import DEFAULT_REPORT_FILE_MODE
from leakwatch.core.pricing import Price
from leakwatch.core.report_content import ReportContent, build_content
from leakwatch.core.weeks import IsoWeek
from leakwatch.errors import ConfigError, UsageProblem
from leakwatch.files import dir_mode_for, make_private_dir, write_private
from leakwatch.notify.report_send import ReportPost, SendDecision, send_report
from leakwatch.store.db import SessionFactory, transaction
from leakwatch.store.report_queries import fetch_report_inputs
from leakwatch.store.report_record import save_content
from leakwatch.views.report_chart import render_billed_png, render_trend_png
from leakwatch.views.report_render import render_html, render_json, render_markdown

__all__ = [
    "IsoWeek",
    "Price",
    "ReportContent",
    "ReportPost",
    "SendDecision",
    "build_report",
    "send_report",
    "write_report",
]


def build_report(
    sessions: SessionFactory,
    *,
    week: str | None,
    now: datetime,
    timezone: str | ZoneInfo,
    prices: Mapping[str, Price],
    checks_every: timedelta | None,
    currency: str = "$",
) -> ReportContent:
    """Compute the report for `week` (default: the last complete week at `now`) and save it.

    Raises UsageProblem for a malformed week, ConfigError for an unknown time zone.
    """
    zone = _zone(timezone)
    iso_week = _week(week) if week else IsoWeek.last_complete(now, zone)
    with transaction(sessions) as session:
        inputs = fetch_report_inputs(session, iso_week, zone)
    content = build_content(
        inputs,
        timezone=zone,
        prices=prices,
        generated_at=now,
        checks_every=checks_every,
        currency=currency,
    )
    save_content(sessions, content.week, content.to_dict(), now)
    structlog.get_logger().info(
        "report.built",
        week=content.week,
        timezone=zone.key,
        sampled=content.totals.sampled,
        decided=content.totals.decided,
        leaking=content.totals.leaking,
    )
    return content


def _zone(timezone: str | ZoneInfo) -> ZoneInfo:
    if isinstance(timezone, ZoneInfo):
        return timezone
    try:
        return ZoneInfo(timezone)
    except (ValueError, KeyError):
        raise ConfigError([f"report.timezone {timezone!r} is not a known IANA time zone"]) from None


def _week(text: str) -> IsoWeek:
    try:
        return IsoWeek.parse(text)
    except ValueError as exc:
        raise UsageProblem(str(exc)) from None


def write_report(
    content: ReportContent, out_dir: Path, *, mode: int = DEFAULT_REPORT_FILE_MODE
) -> list[Path]:
    """Write `leakage-<week>.{md,html,json,png}` into `out_dir`; return the paths.

    Order: PNG, HTML, Markdown, JSON. Each file is written to a temporary name and
    renamed, so a reader never sees half a report. Files get `mode` (default 0640:
    the owner and its group, e.g. whoever ships reports on); a new `out_dir` the
    matching folder mode.
    """
    make_private_dir(out_dir, dir_mode_for(mode))
    stem = f"leakage-{content.week}"
    png = render_trend_png(content)
    billed_png = render_billed_png(content)
    billed_name = f"{stem}-billed.png" if billed_png is not None else None
    markdown = render_markdown(
        content, chart_filename=f"{stem}.png", billed_chart_filename=billed_name
    )
    outputs: list[tuple[Path, bytes]] = [(out_dir / f"{stem}.png", png)]
    if billed_png is not None and billed_name is not None:
        outputs.append((out_dir / billed_name, billed_png))
    outputs += [
        (out_dir / f"{stem}.html", render_html(content, png, billed_png).encode("utf-8")),
        (out_dir / f"{stem}.md", markdown.encode()),
        (out_dir / f"{stem}.json", render_json(content).encode("utf-8")),
    ]
    for path, data in outputs:
        write_private(path, data, mode)
    return [path for path, _ in outputs]
