"""Block Kit rendering: content, escaping and Slack's size limits."""

from datetime import UTC, datetime

import pytest

from leakwatch.core.text import escape_mrkdwn
from leakwatch.notify.blocks import (
    MAX_BLOCKS,
    SECTION_TEXT_MAX,
    AlertView,
    MessageKind,
    render,
)

NOW = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)


def view(**changes: object) -> AlertView:
    base: dict[str, object] = {
        "rule_name": "leak rate",
        "severity": "warning",
        "scope": "event_type=api_request",
        "status": "firing",
        "episode": 3,
        "now": NOW,
        "outcomes": ("missing",),
        "rate_name": "missing_rate",
        "rate": 0.1,
        "lower": 0.0657,
        "upper": 0.1494,
        "threshold": 0.05,
        "confidence": 0.95,
        "leaks": 20,
        "samples": 200,
        "window_label": "1d",
        "estimated_leaked_events": 10_000.0,
        "revenue_at_risk": 20.0,
        "examples": tuple((f"t{i}", "missing", "not found after 2 checks") for i in range(1, 7)),
        "breakdown": (("missing", 20),),
        "window_days": 1.0,
    }
    base.update(changes)
    return AlertView(**base)  # type: ignore[arg-type]


def section_texts(kind: MessageKind, **changes: object) -> str:
    message = render(view(**changes), kind)
    return "\n".join(b["text"]["text"] for b in message.blocks if b["type"] == "section")


@pytest.mark.parametrize(
    ("text", "escaped"),
    [
        ("a&b", "a&amp;b"),
        ("<!channel>", "&lt;!channel&gt;"),
        ("plain", "plain"),
        ("&lt;", "&amp;lt;"),
    ],
)
def test_escape_mrkdwn(text: str, escaped: str) -> None:
    assert escape_mrkdwn(text) == escaped


def test_a_fire_says_what_leaks_where_how_much_and_where_to_look() -> None:
    body = section_texts(MessageKind.FIRE)
    assert "missing" in body and "event_type=api_request" in body
    assert "10.0%" in body
    assert "6.6% – 14.9%" in body and "threshold 5.0%" in body
    assert "20 leaking of 200 decided in the last 1d" in body
    assert "*Not billed:* ≈ 10,000 events and ≈ $20" in body and "a day)" in body
    assert "*Main cause:* events never reached Metronome" in body
    assert "`t5` — missing: not found after 2 checks" in body
    assert "`t6`" not in body  # five examples at most
    assert "leakwatch lookup t1 t2 t3 t4 t5" in body
    assert "leakwatch outcomes --outcome missing --since 1d" in body
    footer = render(view(reason="announcing it"), MessageKind.FIRE).blocks[-1]
    assert "announcing it" not in str(footer)  # no decision jargon under the message


def test_unknown_volume_and_prices_are_left_out_not_shown_as_zero() -> None:
    body = section_texts(MessageKind.FIRE, estimated_leaked_events=None, revenue_at_risk=None)
    assert "Not billed" not in body and "≈" not in body


def test_text_from_events_is_escaped_everywhere() -> None:
    message = render(
        view(
            scope="customer_id=<!here>&co",
            examples=(("<@U123>", "missing", "<!channel>"),),
            rule_name="a<b",
        ),
        MessageKind.FIRE,
    )
    mrkdwn = [b["text"]["text"] for b in message.blocks if b["type"] == "section"]
    mrkdwn += [e["text"] for b in message.blocks if b["type"] == "context" for e in b["elements"]]
    blob = message.text + "\n".join(mrkdwn)
    # Header blocks are plain_text, which Slack never parses for mentions.
    assert message.blocks[0]["text"]["type"] == "plain_text"
    assert "<!here>" not in blob and "<@U123>" not in blob and "<!channel>" not in blob
    assert "&lt;!here&gt;&amp;co" in blob


def test_huge_values_stay_inside_block_kit_limits() -> None:
    message = render(
        view(scope="x" * 10_000, examples=(("y" * 5_000, "missing", "z" * 5_000),) * 5),
        MessageKind.FIRE,
    )
    assert len(message.blocks) <= MAX_BLOCKS
    for block in message.blocks:
        if block["type"] == "section":
            assert len(block["text"]["text"]) <= SECTION_TEXT_MAX
        if block["type"] == "header":
            assert len(block["text"]["text"]) <= 150


@pytest.mark.parametrize(
    ("kind", "status", "headline"),
    [
        (MessageKind.FIRE, "firing", "WARNING: leak rate (event_type=api_request)"),
        (MessageKind.UPDATE, "firing", "Update: leak rate (event_type=api_request)"),
        (MessageKind.REPEAT, "firing", "Still firing: leak rate (event_type=api_request)"),
        (MessageKind.RESOLVE, "inactive", "Resolved: leak rate (event_type=api_request)"),
        (MessageKind.EDIT, "inactive", "[RESOLVED] leak rate (event_type=api_request)"),
        (MessageKind.EDIT, "firing", "[FIRING] leak rate (event_type=api_request)"),
    ],
)
def test_each_kind_has_its_headline_and_a_text_fallback(
    kind: MessageKind, status: str, headline: str
) -> None:
    message = render(view(status=status), kind)
    assert message.blocks[0]["text"]["text"] == headline
    assert message.text.startswith(headline)


def test_a_health_alert_shows_its_detail_and_no_rate() -> None:
    message = render(
        view(is_health=True, detail="no new events for 2h", scope="source=gateway"),
        MessageKind.FIRE,
    )
    body = str(message.blocks)
    assert "no new events for 2h" in body and "threshold" not in body
