"""The weekly report stage: build it from the store, write its files, send it once. I/O.

`build_report` runs the aggregation queries, computes the content (pure,
`core/report_content.py`) and saves it in the WeeklyReport row; `write_report` writes
the Markdown, HTML, JSON and PNG files; `notify/report_send.py` posts to Slack once per
week. `leakwatch report` and the daemon's weekly job both call `produce_weekly_report`.
With a bot token the summary is posted with the PNG and HTML in its thread; with only
a webhook the summary is posted alone (a webhook cannot upload files). Either way the
WeeklyReport row makes sending idempotent per week unless forced.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import structlog
from slack_sdk.errors import SlackApiError, SlackClientError

from leakwatch.config import DEFAULT_REPORT_FILE_MODE, Settings
from leakwatch.core.pricing import Price
from leakwatch.core.report_content import ReportContent, build_content
from leakwatch.core.schedule import last_weekly_instant
from leakwatch.core.weeks import IsoWeek
from leakwatch.errors import ConfigError, LeakwatchError, UsageProblem
from leakwatch.files import dir_mode_for, make_private_dir, write_private
from leakwatch.notify.report_send import ReportSlack, send_report
from leakwatch.store.db import SessionFactory, transaction
from leakwatch.store.report_queries import fetch_report_inputs
from leakwatch.store.report_record import load_record, mark_sent, save_content
from leakwatch.views.report_chart import render_billed_png, render_trend_png
from leakwatch.views.report_render import (
    render_html,
    render_json,
    render_markdown,
    render_slack_blocks,
    render_slack_text,
)


@dataclass
class ReportOutcome:
    content: ReportContent
    paths: list[Path] = field(default_factory=list)
    sent: str | None = None


def produce_weekly_report(
    settings: Settings,
    *,
    sessions: SessionFactory,
    slack: ReportSlack | None,
    now: datetime,
    week: str | None = None,
    out_dir: Path | None = None,
    send: bool = False,
    force: bool = False,
) -> ReportOutcome:
    """Build the week's report from the store, write its files, and send it if asked.

    `slack` holds the clients wiring built (None: no Slack configured). Raises
    UsageProblem for a malformed week or a send without Slack; LeakwatchError when
    Slack refuses.
    """
    content = build_report(
        sessions,
        week=week,
        now=now,
        timezone=settings.report.timezone,
        prices=settings.report.prices,
        checks_every=settings.checks.every,
        currency=settings.report.currency,
    )
    paths = write_report(
        content, out_dir or settings.report.out_dir, mode=settings.report.file_mode
    )
    outcome = ReportOutcome(content=content, paths=paths)
    if send:
        outcome.sent = _send(slack, sessions, content, paths, now=now, force=force)
    return outcome


def weekly_report_missed(settings: Settings, sessions: SessionFactory, *, now: datetime) -> bool:
    """Whether the last scheduled weekly report never happened (no leader was up then).

    Due means: `report.weekly` has passed since the week it reports ended, and the store
    holds no report for that week — or holds one never sent while Slack is configured.
    """
    zone = ZoneInfo(settings.report.timezone)
    due_at = last_weekly_instant(now, settings.report.weekly, zone)
    week = str(IsoWeek.last_complete(due_at, zone))
    record = load_record(sessions, week)
    if record is None:
        return True
    slack = settings.slack_bot_token is not None or settings.slack_webhook_url is not None
    return slack and record.sent_at is None


def _send(
    slack: ReportSlack | None,
    sessions: SessionFactory,
    content: ReportContent,
    paths: list[Path],
    *,
    now: datetime,
    force: bool,
) -> str:
    log = structlog.get_logger()
    try:
        if slack is not None and slack.client is not None:
            if not slack.channel:
                raise UsageProblem("--send needs [slack] channel with SLACK_BOT_TOKEN")
            attachments = [p for p in paths if p.suffix in (".png", ".html")]
            result = send_report(
                sessions,
                content,
                client=slack.client,
                channel=slack.channel,
                files=attachments,
                now=now,
                force=force,
            )
            if result.decision.value == "skip_already_sent":
                return f"already sent to Slack for {content.week} (use --force to post again)"
            return f"sent to Slack ({result.channel}, {len(result.files)} file(s) in the thread)"
        if slack is not None and slack.webhook is not None:
            record = load_record(sessions, content.week)
            if record is not None and record.sent_at is not None and not force:
                return f"already sent to Slack for {content.week} (use --force to post again)"
            response = slack.webhook.send(
                text=render_slack_text(content), blocks=render_slack_blocks(content)
            )
            if response.status_code != 200:
                raise LeakwatchError(
                    f"Slack webhook answered HTTP {response.status_code}: {response.body[:200]}"
                )
            mark_sent(sessions, content.week, now)
            log.info("report.sent", week=content.week, via="webhook")
            return "sent to Slack by webhook (summary only: webhooks cannot upload files)"
    except SlackApiError as exc:
        error = exc.response.get("error") if exc.response is not None else None
        raise LeakwatchError(
            f"Slack refused the report: {error or exc}; the files are written, "
            "and --send again resumes without posting twice"
        ) from None
    except (SlackClientError, OSError) as exc:
        raise LeakwatchError(
            f"cannot reach Slack: {exc}; the files are written, and --send again resumes"
        ) from None
    raise UsageProblem(
        "--send needs Slack: set SLACK_BOT_TOKEN (with [slack] channel) or SLACK_WEBHOOK_URL"
    )


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
