"""Post the weekly report to Slack, once per week. I/O.

Stage order (as Alertmanager's notify pipeline): decide from the WeeklyReport row
whether to send (a pure decision with a reason), post the summary as Block Kit,
record the root message's ts at once, upload the PNG and HTML into its thread with
`files_upload_v2`, and only then record `sent_at`. A crash after the post but before
the uploads leaves `slack_ts` set and `sent_at` empty: the next run uploads into the
existing thread instead of posting a second root message.

A crash between Slack accepting the post and `slack_ts` being recorded leaves no trace
in the store, so the post carries a marker in its message metadata (as alerts do), and
before posting a week's root the channel's history since the week began is searched
for it: found, the run records it and uploads into that thread instead of posting
again. A history Slack cannot give raises, and the next run tries again: posting on a
wrong "not found" is the duplicate this exists to prevent.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from pathlib import Path

import structlog
from slack_sdk import WebClient, WebhookClient

from leakwatch.core.report_content import ReportContent
from leakwatch.errors import LeakwatchError
from leakwatch.notify.slack import marker_metadata, message_marker
from leakwatch.store.db import SessionFactory
from leakwatch.store.report_record import (
    ReportRecord,
    mark_posted,
    mark_sent,
    save_content,
)
from leakwatch.views.report_render import render_slack_blocks, render_slack_text


@dataclass(frozen=True, slots=True)
class ReportSlack:
    """The Slack clients the weekly report goes out through (built by wiring).

    A bot token gives `client` (post, then upload the files into the thread) and the
    configured `channel`; a webhook gives `webhook` (the summary alone).
    """

    client: WebClient | None = None
    channel: str | None = None
    webhook: WebhookClient | None = None


class SendDecision(StrEnum):
    POST = "post"
    UPLOAD_ONLY = "upload_only"
    SKIP_ALREADY_SENT = "skip_already_sent"


def decide_send(record: ReportRecord | None, *, force: bool) -> SendDecision:
    """Choose what a send must do for this week, given what was sent before."""
    if force or record is None:
        return SendDecision.POST
    if record.sent_at is not None:
        return SendDecision.SKIP_ALREADY_SENT
    if record.slack_ts is not None and record.slack_channel is not None:
        return SendDecision.UPLOAD_ONLY
    return SendDecision.POST


MAX_HISTORY_PAGES = 20


def report_marker(week: str) -> str:
    """The marker a week's report root carries in its Slack message metadata."""
    return f"leakwatch-report:{week}"


def find_posted_report(
    client: WebClient, channel: str, marker: str, *, oldest: datetime
) -> tuple[str, str] | None:
    """(channel id, ts) of the root message carrying `marker` since `oldest`, else None.

    Raises slack_sdk's errors, and LeakwatchError when the history is longer than it
    searches: only a complete answer may say "not posted".
    """
    channel_id = _channel_id(client, channel)
    cursor: str | None = None
    for _page in range(MAX_HISTORY_PAGES):
        answer = client.conversations_history(
            channel=channel_id,
            oldest=f"{oldest.timestamp():.6f}",
            include_all_metadata=True,
            limit=200,
            cursor=cursor,
        )
        for message in answer.get("messages") or []:
            if isinstance(message, dict) and message_marker(message) == marker:
                return channel_id, str(message["ts"])
        cursor = (answer.get("response_metadata") or {}).get("next_cursor") or None
        if not cursor:
            return None
    raise LeakwatchError(f"Slack {channel}: history too long to search for {marker}")


def _channel_id(client: WebClient, channel: str) -> str:
    name = channel.lstrip("#")
    if not channel.startswith("#") and name[:1] in ("C", "G") and name.isupper():
        return name
    cursor: str | None = None
    for _page in range(MAX_HISTORY_PAGES):
        answer = client.conversations_list(
            types="public_channel,private_channel", exclude_archived=True, limit=1000, cursor=cursor
        )
        for item in answer.get("channels") or []:
            if isinstance(item, dict) and item.get("name") == name and item.get("id"):
                return str(item["id"])
        cursor = (answer.get("response_metadata") or {}).get("next_cursor") or None
        if not cursor:
            break
    raise LeakwatchError(f"Slack channel {channel} not found (or the bot is not in it)")


@dataclass(frozen=True, slots=True)
class ReportPost:
    decision: SendDecision
    channel: str | None
    ts: str | None
    files: tuple[str, ...]


def send_report(
    sessions: SessionFactory,
    content: ReportContent,
    *,
    client: WebClient,
    channel: str,
    files: Sequence[Path],
    now: datetime,
    force: bool = False,
) -> ReportPost:
    """Post `content` to `channel` with `files` in the thread, unless already sent.

    Raises slack_sdk's errors (SlackApiError, URLError…) to the caller; whatever was
    recorded before the failure makes the next attempt resume rather than repeat.
    """
    log = structlog.get_logger()
    record = save_content(sessions, content.week, content.to_dict(), now)
    decision = decide_send(record, force=force)
    if decision is SendDecision.SKIP_ALREADY_SENT:
        log.info(
            "report.send_skipped",
            week=content.week,
            reason="already sent",
            slack_ts=record.slack_ts,
        )
        return ReportPost(decision, record.slack_channel, record.slack_ts, ())
    marker = report_marker(content.week)
    posted = None
    if decision is SendDecision.POST and not force:
        posted = find_posted_report(client, channel, marker, oldest=content.start_utc)
    if posted is not None:
        channel_id, ts = posted
        mark_posted(sessions, content.week, channel_id, ts)
        decision = SendDecision.UPLOAD_ONLY
        log.info("report.post_found", week=content.week, channel=channel_id, slack_ts=ts)
    elif decision is SendDecision.POST:
        response = client.chat_postMessage(
            channel=channel,
            text=render_slack_text(content),
            blocks=render_slack_blocks(content),
            unfurl_links=False,
            metadata=marker_metadata(marker),
        )
        channel_id = str(response["channel"])
        ts = str(response["ts"])
        mark_posted(sessions, content.week, channel_id, ts)
        log.info("report.posted", week=content.week, channel=channel_id, slack_ts=ts)
    else:
        assert record.slack_channel is not None and record.slack_ts is not None
        channel_id, ts = record.slack_channel, record.slack_ts
    uploads = [{"file": str(path), "filename": path.name, "title": path.name} for path in files]
    if uploads:
        # The upload API wants the channel id the post returned, not a #name.
        client.files_upload_v2(file_uploads=uploads, channel=channel_id, thread_ts=ts)
    mark_sent(sessions, content.week, now)
    names = tuple(path.name for path in files)
    log.info("report.sent", week=content.week, channel=channel_id, slack_ts=ts, files=names)
    return ReportPost(decision, channel_id, ts, names)
