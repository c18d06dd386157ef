"""Render alert notifications as Slack Block Kit messages. Pure: no I/O, no clock.

A message says what leaks, where (scope), the rate with its confidence interval against
the threshold, how many samples back it, what it is estimated to cost, a few example
transaction ids and the `leakwatch outcomes` command that lists the rest.

Anything that came from events (scope values, transaction ids, details) goes through
`slack_value`, the one escaping function for such strings in every Slack field: a
customer id `<!channel>` must neither ping the channel nor plant a link, nor close a
code span or start a line. Every mrkdwn text object is `verbatim`, so Slack does not
turn bare URLs, `@here` or `#channel` into links or mentions either. Every text is
clipped to Block Kit's limits so Slack never rejects a message for size.
"""

import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from leakwatch.core.formatting import (
    format_count,
    format_instant,
    format_interval,
    format_money,
    format_percent,
    percent_decimals,
)
from leakwatch.core.report_content import CAUSE_TEXT
from leakwatch.core.text import mrkdwn, slack_value

SECTION_TEXT_MAX = 3000
HEADER_TEXT_MAX = 150
CONTEXT_TEXT_MAX = 2000
MESSAGE_TEXT_MAX = 40_000
MAX_BLOCKS = 50
MAX_EXAMPLES = 5


class MessageKind(StrEnum):
    """What a notification tells the channel."""

    FIRE = "fire"
    UPDATE = "update"
    REPEAT = "repeat"
    RESOLVE = "resolve"
    # The root message edited in place to show the alert's current status.
    EDIT = "edit"


@dataclass(frozen=True, slots=True)
class SlackMessage:
    """A message as Slack takes it: blocks plus the plain-text fallback."""

    text: str
    blocks: tuple[dict[str, Any], ...] = ()

    def to_payload(self) -> dict[str, Any]:
        return {"text": self.text, "blocks": [dict(b) for b in self.blocks]}

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> "SlackMessage":
        blocks = payload.get("blocks") or []
        return cls(text=str(payload.get("text") or ""), blocks=tuple(dict(b) for b in blocks))


@dataclass(frozen=True, slots=True)
class AlertView:
    """Everything a message about one alert shows, already computed by the shell.

    Rates are fractions (0.012 = 1.2 %). `estimated_leaked_events` and
    `revenue_at_risk` are None when the volume or the prices are unknown. For health
    alerts (`is_health`) the rate fields are unused and `detail` says what is wrong.
    """

    rule_name: str
    severity: str
    scope: str
    status: str
    episode: int
    now: datetime
    is_health: bool = False
    rate_name: str = "leak_rate"
    outcomes: tuple[str, ...] = ()
    rate: float | None = None
    lower: float | None = None
    upper: float | None = None
    threshold: float | None = None
    confidence: float | None = None
    leaks: int | None = None
    samples: int | None = None
    window_label: str = ""
    since: datetime | None = None
    estimated_leaked_events: float | None = None
    revenue_at_risk: float | None = None
    currency: str = "$"
    # (transaction id, outcome, reason) of a few sampled events behind the alert.
    examples: tuple[tuple[str, str, str], ...] = ()
    # Leaking outcomes in the window and their counts, most first.
    breakdown: tuple[tuple[str, int], ...] = ()
    window_days: float | None = None
    detail: str = ""
    facts: Mapping[str, str] = field(default_factory=dict)
    reason: str = ""
    # In plain words, why a rate alert fired (or holds, or cleared): the evidence of
    # the sequential test ("3.1% of 412 lookups leaked; …"). Empty for interval rules.
    why: str = ""


def clip(text: str, limit: int) -> str:
    """Cut `text` to `limit` characters, saying so with an ellipsis."""
    if len(text) <= limit:
        return text
    return text[: max(0, limit - 1)] + "…"


def _scope_label(scope: str) -> str:
    return scope if scope else "all events"


def outcomes_command(view: AlertView) -> str:
    """The CLI command that lists every sampled event behind the alert."""
    parts = ["leakwatch", "outcomes"]
    for outcome in view.outcomes:
        parts += ["--outcome", outcome]
    if view.window_label:
        parts += ["--since", view.window_label]
    key, _, value = (view.scope or "").partition("=")
    flag = SCOPE_FLAGS.get(key)
    if flag and value:
        parts += [flag, shlex.quote(value)]
    return " ".join(parts)


# How `leakwatch outcomes` narrows to an alert's scope ("event_type=api_request").
SCOPE_FLAGS = {"event_type": "--event-type", "customer_id": "--customer", "source": "--source"}


_STATUS_EMOJI = {
    MessageKind.FIRE: ":rotating_light:",
    MessageKind.UPDATE: ":arrows_counterclockwise:",
    MessageKind.REPEAT: ":bell:",
    MessageKind.RESOLVE: ":white_check_mark:",
}


def _headline(view: AlertView, kind: MessageKind) -> str:
    """The message's title, its names already escaped (it is shown as header and text)."""
    scope = slack_value(_scope_label(view.scope))
    name = slack_value(view.rule_name)
    if kind is MessageKind.RESOLVE:
        return f"Resolved: {name} ({scope})"
    if kind is MessageKind.EDIT:
        state = "RESOLVED" if view.status == "inactive" else view.status.upper()
        return f"[{state}] {name} ({scope})"
    if kind is MessageKind.REPEAT:
        return f"Still firing: {name} ({scope})"
    if kind is MessageKind.UPDATE:
        return f"Update: {name} ({scope})"
    return f"{view.severity.upper()}: {name} ({scope})"


def _rate_line(view: AlertView) -> str:
    confidence = f"{view.confidence:.0%} " if view.confidence is not None else ""
    # With a sequential decision (`why`) the interval is the window's, for scale: the
    # decision is the test's, said on the Why line, not this interval's.
    whose = " of the window" if view.why else ""
    if view.rate is None or view.lower is None or view.upper is None:
        return f"*{slack_value(view.rate_name)}*: no decided samples"
    decimals = percent_decimals(view.rate, view.lower, view.upper, view.threshold or 0.0)
    return (
        f"*{slack_value(view.rate_name.replace('_', ' '))}* "
        f"{format_percent(view.rate, decimals)} "
        f"({confidence}interval{whose} {format_percent(view.lower, decimals)} – "
        f"{format_percent(view.upper, decimals)}) vs threshold "
        f"{format_percent(view.threshold, decimals)}"
    )


def _facts(view: AlertView) -> list[str]:
    lines: list[str] = []
    if not view.is_health:
        cause = _cause_line(view)
        if cause:
            lines.append(cause)
        if view.why:
            lines.append(f"*Why:* {slack_value(view.why)}")
        lines.append(_rate_line(view))
        if view.samples is not None:
            leaks = f"{view.leaks} leaking of " if view.leaks is not None else ""
            window = f" in the last {slack_value(view.window_label)}" if view.window_label else ""
            lines.append(f"*Samples:* {leaks}{view.samples} decided{window}")
        money = _money_line(view)
        if money:
            lines.append(money)
    for key, value in view.facts.items():
        lines.append(f"*{slack_value(key)}:* {slack_value(value)}")
    return lines


def _cause_line(view: AlertView) -> str:
    """Lead with the main cause and the rest of the breakdown, as the weekly report does."""
    if not view.breakdown:
        return ""
    total = sum(count for _, count in view.breakdown)
    (outcome, count), *rest = view.breakdown
    cause = CAUSE_TEXT.get(outcome, outcome.replace("_", " "))
    line = f"*Main cause:* {cause} ({count} of {total} leaking samples are {outcome})"
    if rest:
        line += "; also " + ", ".join(f"{n} {o}" for o, n in rest)
    return line


def _money_line(view: AlertView) -> str:
    """Leaked events and money over the window, and per day."""
    if view.estimated_leaked_events is None and view.revenue_at_risk is None:
        return ""
    window = f"the last {slack_value(view.window_label)}" if view.window_label else "the window"
    parts = []
    if view.estimated_leaked_events is not None:
        parts.append(f"≈ {format_count(view.estimated_leaked_events)} events")
    if view.revenue_at_risk is not None:
        parts.append(f"≈ {format_money(view.revenue_at_risk, view.currency)}")
    line = f"*Not billed:* {' and '.join(parts)} over {window}"
    if view.revenue_at_risk is not None and view.window_days:
        per_day = view.revenue_at_risk / view.window_days
        line += f" (≈ {format_money(per_day, view.currency)} a day)"
    return line


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": mrkdwn(clip(text, SECTION_TEXT_MAX))}


def _context(text: str) -> dict[str, Any]:
    return {"type": "context", "elements": [mrkdwn(clip(text, CONTEXT_TEXT_MAX))]}


def render(view: AlertView, kind: MessageKind) -> SlackMessage:
    """Build the message for one notification about an alert.

    FIRE is the episode's root; UPDATE, REPEAT and RESOLVE are its thread replies; EDIT
    is the root re-rendered with the current status, for `chat.update`.
    """
    headline = _headline(view, kind)
    emoji = _STATUS_EMOJI.get(
        kind, ":white_check_mark:" if view.status == "inactive" else ":rotating_light:"
    )
    blocks: list[dict[str, Any]] = [
        {
            "type": "header",
            "text": {"type": "plain_text", "text": clip(headline, HEADER_TEXT_MAX), "emoji": True},
        }
    ]
    what = slack_value(view.detail) if view.detail else ""
    if not view.is_health:
        leaking = ", ".join(slack_value(o) for o in view.outcomes) or "leaking outcomes"
        what = (
            f"{emoji} *{slack_value(view.rule_name)}* — {leaking} in "
            f"*{slack_value(_scope_label(view.scope))}*"
        ) + (f"\n{what}" if what else "")
    else:
        what = f"{emoji} *{slack_value(view.rule_name)}* — {what or 'health check failing'}"
    blocks.append(_section(what))
    facts = _facts(view)
    if facts:
        blocks.append(_section("\n".join(facts)))
    if view.examples and not view.is_health and kind is not MessageKind.RESOLVE:
        shown = view.examples[:MAX_EXAMPLES]
        ids = "\n".join(
            f"• `{slack_value(txn)}` — {slack_value(outcome)}"
            + (f": {slack_value(reason)}" if reason else "")
            for txn, outcome, reason in shown
        )
        lookup = " ".join(["leakwatch", "lookup", *(shlex.quote(txn) for txn, _, _ in shown)])
        blocks.append(_section(f"*Examples:*\n{ids}\nLook them up: `{slack_value(lookup)}`"))
    if view.outcomes and not view.is_health:
        blocks.append(_section(f"List them all: `{slack_value(outcomes_command(view))}`"))
    footer = [f"episode {view.episode}", f"as of {format_instant(view.now)}"]
    if view.since is not None:
        footer.append(f"since {format_instant(view.since)}")
    if view.is_health and view.reason:
        footer.append(slack_value(view.reason))
    blocks.append(_context(" · ".join(footer)))
    return SlackMessage(
        text=clip(fallback_text(view, kind), MESSAGE_TEXT_MAX), blocks=tuple(blocks[:MAX_BLOCKS])
    )


def fallback_text(view: AlertView, kind: MessageKind) -> str:
    """The plain text Slack shows in notifications and to screen readers."""
    headline = _headline(view, kind)
    if view.is_health:
        return f"{headline}: {slack_value(view.detail)}" if view.detail else headline
    if view.rate is None or view.lower is None or view.upper is None:
        return headline
    return (
        f"{headline}: {format_interval(view.rate, view.lower, view.upper)} "
        f"vs {format_percent(view.threshold)}"
        + (f" over {view.samples} samples" if view.samples is not None else "")
    )
