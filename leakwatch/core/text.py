"""Make strings from the source log safe to show inside our own text. Pure.

Customer ids, event types and transaction ids come from a log anyone upstream can
write to. Shown inside a sentence, a table cell, a terminal line or a code span, a
newline would start a heading or a fake log line, an escape sequence would drive the
terminal, and a backtick would close the code span around it. Each renderer escapes
its own markup (Slack's `<>&`, Markdown, HTML, rich); what every one of them needs
first is the value on one line with no control characters, which is this module —
and, for Slack, the one function every such value goes through (`slack_value`).
"""

import json
import re
from typing import Any

# C0 controls, DEL and C1 controls; the Unicode line and paragraph separators (which
# some viewers break lines on); bidirectional overrides and isolates, which reorder
# what a reader sees (CVE-2021-42574, "Trojan Source").
_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_UNSAFE_IN_LINES = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
# A run of line-breaking whitespace reads as one space.
_BREAKS = re.compile(r"[\t\n\v\f\r\u2028\u2029]+")


def one_line(value: str) -> str:
    """`value` on one line: line breaks become a space, other control characters vanish."""
    return _CONTROLS.sub("", _BREAKS.sub(" ", value))


def keep_lines(text: str) -> str:
    """`text` with its line breaks and tabs, but no other control character (for a log
    line on a terminal, where a traceback's newlines belong but an ESC from an event
    would drive the terminal)."""
    return _UNSAFE_IN_LINES.sub("", text)


def code_text(value: str) -> str:
    """`value` fit to sit inside a code span: one line, and no backtick to close it."""
    return one_line(value).replace("`", "'")


def escape_mrkdwn(text: str) -> str:
    """Escape the three characters Slack's mrkdwn treats as control characters.

    For text we composed; a value from the log goes through `slack_value`.
    """
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_value(value: str) -> str:
    """Make a log-derived string inert in any Slack field (text, blocks, headers).

    No `<!channel>`, `<@U…>` or `<https://…|…>` survives (`<>&` escaped), and the
    value stays on its line and inside any code span around it (newlines, control
    characters and backticks removed).
    """
    return escape_mrkdwn(code_text(value))


def mrkdwn(text: str) -> dict[str, Any]:
    """A mrkdwn text object Slack shows as written: no auto-linked URLs or mentions."""
    return {"type": "mrkdwn", "text": text, "verbatim": True}


# JSON lets these stand unescaped; a terminal acts on C1 controls, and bidi controls
# reorder what a reader sees. Escaped, the JSON decodes to the same values.
_JSON_ESCAPE = {c: f"\\u{c:04x}" for c in [*range(0x7F, 0xA0), 0x2028, 0x2029]} | {
    c: f"\\u{c:04x}" for c in [*range(0x202A, 0x202F), *range(0x2066, 0x206A)]
}
# A spreadsheet runs a cell starting with one of these as a formula (CSV injection).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def json_line(record: dict[str, Any]) -> str:
    """One JSON object on one line, UTF-8 kept, with every control character escaped."""
    return json.dumps(record, ensure_ascii=False, default=str).translate(_JSON_ESCAPE)


def csv_cell(value: Any) -> Any:
    """A cell a spreadsheet shows as text: one starting like a formula gets a `'` first."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value
