"""Produce the weekly report as configured: build, write, and send at most once. I/O.

`leakwatch report` and the daemon's weekly job both call `produce_weekly_report`.
With a bot token the summary is posted with the PNG and HTML in its thread; with only
a webhook the summary is posted alone (a webhook cannot upload files). Either way the
WeeklyReport row makes sending idempotent per week unless forced.
"""

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import structlog
from slack_sdk.errors import SlackApiError, SlackClientError

from leakwatch.config import Settings
from leakwatch.core.schedule import last_weekly_instant
from leakwatch.core.weeks import IsoWeek
from leakwatch.errors import LeakwatchError, UsageProblem
from leakwatch.notify.report_send import ReportSlack
from leakwatch.pipeline.report_build import ReportContent, build_report, send_report, write_report
from leakwatch.store.db import SessionFactory
from leakwatch.store.report_record import load_record, mark_sent
from leakwatch.views.report_render import render_slack_blocks, render_slack_text


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
