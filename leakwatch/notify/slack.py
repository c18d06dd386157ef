"""Deliver messages to Slack through slack-sdk: a bot token or an incoming webhook. I/O.

A notifier makes one attempt and says how it went; it never retries and never sleeps.
Retrying is the outbox sender's decision (see `leakwatch.notify.outbox`), so a Slack
429 comes back as a retryable failure carrying Slack's `Retry-After`, and the sender
schedules the next attempt instead of blocking a thread.

Failure classes::

    SendStatus.SENT         Slack accepted the message (ts and channel id returned)
    SendStatus.RETRYABLE    429, 5xx, timeouts, refused connections, Slack's own
                            internal_error / service_unavailable / ratelimited
    SendStatus.PERMANENT    everything else: invalid_auth, channel_not_found,
                            not_in_channel, invalid_blocks, msg_too_long, ...

Bot mode (`SlackNotifier`) posts with message metadata carrying a delivery marker, so a
message whose acknowledgement was lost (timeout, crash) can be found again with
`conversations.history` / `conversations.replies`. Webhook mode (`WebhookNotifier`)
can neither thread, edit nor look up: see the outbox docstring for what that costs.

Neither class ever logs or returns the token or the webhook URL.
"""

import json
import logging
import socket
import urllib.error
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Protocol

from slack_sdk.errors import SlackApiError, SlackRequestError
from slack_sdk.web import WebClient
from slack_sdk.webhook import WebhookClient

from leakwatch.core.durations import retry_after_s
from leakwatch.notify.blocks import SlackMessage

SLACK_API_URL = "https://slack.com/api/"
MARKER_EVENT_TYPE = "leakwatch_notification"

# Slack's own `ok: false` errors that mean "try again later", not "you are wrong".
RETRYABLE_SLACK_ERRORS = frozenset(
    {
        "ratelimited",
        "rate_limited",
        "internal_error",
        "fatal_error",
        "service_unavailable",
        "request_timeout",
        "team_added_to_org",
    }
)
# How many pages of history a look-up reads before saying "unknown" rather than "no".
MAX_LOOKUP_PAGES = 10


class SendStatus(StrEnum):
    SENT = "sent"
    RETRYABLE = "retryable"
    PERMANENT = "permanent"


@dataclass(frozen=True, slots=True)
class SendResult:
    """How one attempt to post or edit went."""

    status: SendStatus
    channel: str | None = None
    ts: str | None = None
    error: str | None = None
    retry_after_s: float | None = None

    @property
    def ok(self) -> bool:
        return self.status is SendStatus.SENT

    @property
    def rate_limited(self) -> bool:
        return self.retry_after_s is not None


class LookupStatus(StrEnum):
    FOUND = "found"
    NOT_FOUND = "not_found"
    # The question could not be answered now (Slack down, rate limited): do not post.
    UNKNOWN = "unknown"
    # This notifier cannot look messages up at all (webhooks).
    UNSUPPORTED = "unsupported"


@dataclass(frozen=True, slots=True)
class MessageLookup:
    """Whether a message carrying a delivery marker is already in Slack."""

    status: LookupStatus
    channel: str | None = None
    ts: str | None = None
    error: str | None = None
    retry_after_s: float | None = None


class Notifier(Protocol):
    """What the outbox sender needs from a chat integration."""

    # Whether replies can go into a thread, and whether posted messages can be found again.
    can_thread: bool
    can_look_up: bool

    def post(
        self,
        message: SlackMessage,
        *,
        marker: str,
        channel: str | None = None,
        thread_ts: str | None = None,
    ) -> SendResult: ...

    def edit(self, message: SlackMessage, *, channel: str, ts: str) -> SendResult: ...

    def look_up(
        self,
        *,
        marker: str,
        oldest: datetime,
        channel: str | None = None,
        thread_ts: str | None = None,
    ) -> MessageLookup: ...


def quiet_sdk_logger() -> logging.Logger:
    """Give slack-sdk a logger of its own that stays silent.

    slack-sdk logs request URLs and headers at DEBUG; with a webhook the URL is the
    secret, with a bot the header is. We log outcomes ourselves through structlog.
    """
    logger = logging.getLogger("leakwatch.notify.slack_sdk")
    logger.propagate = False
    logger.setLevel(logging.CRITICAL)
    if not logger.handlers:
        logger.addHandler(logging.NullHandler())
    return logger


def marker_metadata(marker: str) -> dict[str, Any]:
    return {"event_type": MARKER_EVENT_TYPE, "event_payload": {"marker": marker}}


def message_marker(message: dict[str, Any]) -> str | None:
    metadata = message.get("metadata")
    if not isinstance(metadata, dict) or metadata.get("event_type") != MARKER_EVENT_TYPE:
        return None
    payload = metadata.get("event_payload")
    if not isinstance(payload, dict):
        return None
    marker = payload.get("marker")
    return marker if isinstance(marker, str) else None


def classify_http(
    status_code: int, error: str | None, headers: Any
) -> tuple[SendStatus, str, float | None]:
    """Classify one failed answer from Slack: (status, error text, retry after seconds)."""
    if status_code == 429:
        return SendStatus.RETRYABLE, "ratelimited", retry_after_s(headers) or 1.0
    if status_code >= 500 or status_code == 408:
        # The body of a 5xx is often a proxy's HTML or text page: the code says enough.
        return SendStatus.RETRYABLE, f"http_{status_code}", None
    if error in RETRYABLE_SLACK_ERRORS:
        retry_after = retry_after_s(headers)
        if error in ("ratelimited", "rate_limited") and retry_after is None:
            retry_after = 1.0
        return SendStatus.RETRYABLE, error or "", retry_after
    return SendStatus.PERMANENT, error or f"http_{status_code}", None


def _is_transport_error(exc: BaseException) -> bool:
    return isinstance(
        exc, TimeoutError | socket.timeout | ConnectionError | urllib.error.URLError | OSError
    )


def _transport_error_text(exc: BaseException) -> str:
    # The exception text of urllib never carries the URL or headers; keep only its class
    # and reason so nothing secret can slip into the outbox row or the log.
    reason = getattr(exc, "reason", None)
    if isinstance(exc, TimeoutError | socket.timeout) or isinstance(reason, TimeoutError):
        return "timeout"
    if reason is not None:
        return f"connection: {type(reason).__name__}"
    return f"connection: {type(exc).__name__}"


def _ts_to_datetime_bound(when: datetime) -> str:
    return f"{when.astimezone(UTC).timestamp():.6f}"


class SlackNotifier:
    """Post, thread, edit and look up messages with a bot token.

    `channel` may be a channel id (`C…`) or a `#name`; looking messages up needs the
    id, which is resolved once with `conversations.list` when a name was given (or
    learned from the first successful post). Scopes: chat:write, channels:history
    (groups:history for private channels), channels:read for a `#name`.
    """

    def __init__(
        self,
        *,
        token: str,
        channel: str,
        base_url: str | None = None,
        timeout_s: float = 10.0,
    ) -> None:
        self._client = WebClient(
            token=token,
            base_url=base_url or SLACK_API_URL,
            # Typed int in slack-sdk, but handed to urllib, which takes seconds as a float.
            timeout=timeout_s,  # type: ignore[arg-type]
            retry_handlers=[],
            logger=quiet_sdk_logger(),
        )
        self._channel = channel
        self._channel_id: str | None = channel if _looks_like_id(channel) else None

    def __repr__(self) -> str:
        return f"SlackNotifier(channel={self._channel!r})"

    can_thread = True
    can_look_up = True

    def post(
        self,
        message: SlackMessage,
        *,
        marker: str,
        channel: str | None = None,
        thread_ts: str | None = None,
    ) -> SendResult:
        """Post a message (a reply when `thread_ts` is given) carrying `marker`."""
        target = channel or self._channel
        result = self._call(
            "chat.postMessage",
            {
                "channel": target,
                "text": message.text,
                "blocks": list(message.blocks),
                "thread_ts": thread_ts,
                "metadata": marker_metadata(marker),
                "unfurl_links": False,
                "unfurl_media": False,
            },
        )
        if isinstance(result, SendResult):
            return result
        channel_id = str(result.get("channel") or target)
        if _looks_like_id(channel_id) and target == self._channel:
            self._channel_id = channel_id
        return SendResult(SendStatus.SENT, channel=channel_id, ts=str(result.get("ts")))

    def edit(self, message: SlackMessage, *, channel: str, ts: str) -> SendResult:
        """Replace the content of a message already posted (the alert's root)."""
        result = self._call(
            "chat.update",
            {"channel": channel, "ts": ts, "text": message.text, "blocks": list(message.blocks)},
        )
        if isinstance(result, SendResult):
            return result
        return SendResult(
            SendStatus.SENT,
            channel=str(result.get("channel") or channel),
            ts=str(result.get("ts") or ts),
        )

    def look_up(
        self,
        *,
        marker: str,
        oldest: datetime,
        channel: str | None = None,
        thread_ts: str | None = None,
    ) -> MessageLookup:
        """Find the message carrying `marker` posted since `oldest`.

        A reply is looked for in its thread, a root in the channel's history. Anything
        short of a complete answer is UNKNOWN, never NOT_FOUND: posting on a wrong
        "not found" is exactly the duplicate this exists to prevent.
        """
        channel_id = channel if channel and _looks_like_id(channel) else None
        if channel_id is None:
            resolved = self._resolve_channel_id()
            if isinstance(resolved, MessageLookup):
                return resolved
            channel_id = resolved
        method = "conversations.replies" if thread_ts else "conversations.history"
        cursor: str | None = None
        for _page in range(MAX_LOOKUP_PAGES):
            params: dict[str, Any] = {
                "channel": channel_id,
                "oldest": _ts_to_datetime_bound(oldest),
                "include_all_metadata": True,
                "limit": 200,
                "cursor": cursor,
            }
            if thread_ts:
                params["ts"] = thread_ts
            answer = self._call(method, params, http_verb="GET")
            if isinstance(answer, SendResult):
                return MessageLookup(
                    LookupStatus.UNKNOWN, error=answer.error, retry_after_s=answer.retry_after_s
                )
            for item in answer.get("messages") or []:
                if isinstance(item, dict) and message_marker(item) == marker:
                    return MessageLookup(
                        LookupStatus.FOUND, channel=channel_id, ts=str(item.get("ts"))
                    )
            cursor = (answer.get("response_metadata") or {}).get("next_cursor") or None
            if not cursor:
                return MessageLookup(LookupStatus.NOT_FOUND, channel=channel_id)
        return MessageLookup(LookupStatus.UNKNOWN, error="history too long to search")

    def _resolve_channel_id(self) -> str | MessageLookup:
        if self._channel_id is not None:
            return self._channel_id
        wanted = self._channel.lstrip("#")
        cursor: str | None = None
        for _page in range(MAX_LOOKUP_PAGES):
            answer = self._call(
                "conversations.list",
                {
                    "types": "public_channel,private_channel",
                    "exclude_archived": True,
                    "limit": 1000,
                    "cursor": cursor,
                },
                http_verb="GET",
            )
            if isinstance(answer, SendResult):
                return MessageLookup(
                    LookupStatus.UNKNOWN, error=answer.error, retry_after_s=answer.retry_after_s
                )
            for item in answer.get("channels") or []:
                if isinstance(item, dict) and item.get("name") == wanted and item.get("id"):
                    self._channel_id = str(item["id"])
                    return self._channel_id
            cursor = (answer.get("response_metadata") or {}).get("next_cursor") or None
            if not cursor:
                break
        return MessageLookup(LookupStatus.UNKNOWN, error=f"channel {self._channel} not found")

    def _call(
        self, method: str, params: dict[str, Any], *, http_verb: str = "POST"
    ) -> dict[str, Any] | SendResult:
        """Call one Web API method; the answer's data, or a classified failure."""
        params = {k: v for k, v in params.items() if v is not None}
        try:
            if http_verb == "GET":
                response = self._client.api_call(method, http_verb="GET", params=params)
            else:
                # JSON body, as slack-sdk itself sends chat.* calls with blocks.
                response = self._client.api_call(method, json=params)
        except SlackApiError as exc:
            data = exc.response.data if isinstance(exc.response.data, dict) else {}
            status, error, retry_after = classify_http(
                exc.response.status_code, data.get("error"), exc.response.headers
            )
            return SendResult(status, error=error, retry_after_s=retry_after)
        except (SlackRequestError, json.JSONDecodeError) as exc:
            return SendResult(SendStatus.RETRYABLE, error=f"bad answer: {type(exc).__name__}")
        except Exception as exc:
            if _is_transport_error(exc):
                return SendResult(SendStatus.RETRYABLE, error=_transport_error_text(exc))
            raise
        answer: Any = response.data
        return answer if isinstance(answer, dict) else {}


def _looks_like_id(channel: str) -> bool:
    return bool(channel) and channel[0] in "CGD" and channel[1:].isalnum() and channel.isupper()


class WebhookNotifier:
    """Post messages through an incoming webhook: no threads, no edits, no look-ups."""

    def __init__(self, *, url: str, timeout_s: float = 10.0) -> None:
        self._client = WebhookClient(
            url=url,
            # Typed int in slack-sdk, but handed to urllib, which takes seconds as a float.
            timeout=timeout_s,  # type: ignore[arg-type]
            retry_handlers=[],
            logger=quiet_sdk_logger(),
        )

    def __repr__(self) -> str:
        return "WebhookNotifier(url=<hidden>)"

    can_thread = False
    can_look_up = False

    def post(
        self,
        message: SlackMessage,
        *,
        marker: str,
        channel: str | None = None,
        thread_ts: str | None = None,
    ) -> SendResult:
        """Post a message; `channel` and `thread_ts` do not apply to webhooks."""
        del marker, channel, thread_ts
        try:
            response = self._client.send(text=message.text, blocks=list(message.blocks))
        except Exception as exc:
            if _is_transport_error(exc):
                return SendResult(SendStatus.RETRYABLE, error=_transport_error_text(exc))
            raise
        if response.status_code == 200:
            return SendResult(SendStatus.SENT)
        body = (response.body or "").strip()
        # Webhook errors are short plain-text codes (no_service, invalid_token, ...).
        error = body if body and len(body) <= 100 and " " not in body else None
        status, text, retry_after = classify_http(response.status_code, error, response.headers)
        return SendResult(status, error=text, retry_after_s=retry_after)

    def edit(self, message: SlackMessage, *, channel: str, ts: str) -> SendResult:
        del message, channel, ts
        return SendResult(SendStatus.PERMANENT, error="webhooks cannot edit messages")

    def look_up(
        self,
        *,
        marker: str,
        oldest: datetime,
        channel: str | None = None,
        thread_ts: str | None = None,
    ) -> MessageLookup:
        del marker, oldest, channel, thread_ts
        return MessageLookup(LookupStatus.UNSUPPORTED)
