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

from leakwatch.core.formatting import format_count, format_instant, format_money, format_percent
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
    examples: tuple[str, ...] = ()
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
    what = "health" if view.is_health else view.rate_name.replace("_", " ")
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
    return f"{view.severity.upper()}: {slack_value(what)} — {name} ({scope})"


def _rate_line(view: AlertView) -> str:
    confidence = f"{view.confidence:.0%} " if view.confidence is not None else ""
    # With a sequential decision (`why`) the interval is the window's, for scale: the
    # decision is the test's, said on the Why line, not this interval's.
    whose = " of the window" if view.why else ""
    return (
        f"*{slack_value(view.rate_name)}* {format_percent(view.rate)} "
        f"({confidence}interval{whose} {format_percent(view.lower)} – "
        f"{format_percent(view.upper)}) vs threshold {format_percent(view.threshold)}"
    )


def _facts(view: AlertView) -> list[str]:
    lines: list[str] = []
    if not view.is_health:
        if view.why:
            lines.append(f"*Why:* {slack_value(view.why)}")
        lines.append(_rate_line(view))
        if view.samples is not None:
            leaks = f"{view.leaks} leaking of " if view.leaks is not None else ""
            window = f" in the last {slack_value(view.window_label)}" if view.window_label else ""
            lines.append(f"*Samples:* {leaks}{view.samples} decided{window}")
        if view.estimated_leaked_events is not None:
            lines.append(
                f"*Estimated leaked events:* ≈ {format_count(view.estimated_leaked_events)}"
            )
        if view.revenue_at_risk is not None:
            lines.append(
                f"*Revenue at risk:* ≈ {format_money(view.revenue_at_risk, view.currency)}"
            )
    for key, value in view.facts.items():
        lines.append(f"*{slack_value(key)}:* {slack_value(value)}")
    return lines


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
        ids = "\n".join(f"• `{slack_value(t)}`" for t in view.examples[:MAX_EXAMPLES])
        blocks.append(_section(f"*Example transactions:*\n{ids}"))
    if view.outcomes and not view.is_health:
        blocks.append(_section(f"List them all: `{slack_value(outcomes_command(view))}`"))
    footer = [f"episode {view.episode}", f"as of {format_instant(view.now)}"]
    if view.since is not None:
        footer.append(f"since {format_instant(view.since)}")
    if view.reason:
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
    return (
        f"{headline}: {view.rate_name} {format_percent(view.rate)} "
        f"[{format_percent(view.lower)}, {format_percent(view.upper)}] "
        f"vs {format_percent(view.threshold)}"
        + (f" over {view.samples} samples" if view.samples is not None else "")
    )
