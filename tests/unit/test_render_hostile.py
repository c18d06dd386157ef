"""Log-derived values that look like markup, formulas or terminal codes are shown inert."""

import csv
import io
import json
import re
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from rich.console import Console

from leakwatch.core.exposure import VolumeRow
from leakwatch.core.report_content import (
    Example,
    OutcomeRow,
    ReportInputs,
    build_content,
)
from leakwatch.core.text import json_line, one_line
from leakwatch.core.weeks import IsoWeek
from leakwatch.views.export import write_csv
from leakwatch.views.report_render import render_markdown
from leakwatch.views.status import RateRow, StatusView
from leakwatch.views.terminal import print_status

EVIL_TYPE = "<img src=x onerror=alert(1)>\n## Pwned [link](https://evil.example) *x*"
EVIL_CUSTOMER = "cust`\n# heading <b>"
EVIL_ID = "t-1`<script>`\n| a |"


def _content() -> str:
    week = IsoWeek(2026, 47)
    rows = [
        OutcomeRow(7, "gw", EVIL_TYPE, "matched", 70, 70.0, 70.0),
        OutcomeRow(7, "gw", EVIL_TYPE, "missing", 30, 30.0, 30.0),
    ]
    inputs = ReportInputs(
        weeks=tuple(week.shifted(-i) for i in reversed(range(8))),
        outcome_rows=rows,
        volume_rows=[VolumeRow("gw", EVIL_TYPE, date(2026, 11, 16), 1000, 0.0)],
        bad_lines=[],
        cycles=[],
        alert_transitions=[],
        top_customers=[],
        leak_keys=[],
        examples=[],
    )
    example = Example(
        "missing", EVIL_ID, "gw", EVIL_TYPE, EVIL_CUSTOMER, datetime(2026, 11, 17, tzinfo=UTC), ""
    )
    content = build_content(
        replace(inputs, examples=[example]),
        timezone=ZoneInfo("UTC"),
        prices={},
        generated_at=datetime(2026, 11, 23, tzinfo=UTC),
        checks_every=None,
    )
    return render_markdown(content)


def test_markdown_report_escapes_html_markdown_and_newlines_from_the_log() -> None:
    text = _content()
    outside_code = re.sub(r"`[^`]*`", "", text)
    # Outside code spans every <, [ and ] is escaped: no HTML, no link.
    assert not re.search(r"(?<!\\)[<\[]", outside_code.replace("![", "")), outside_code
    # No log value starts a line of its own (a heading, a table row).
    for line in text.splitlines():
        assert not line.startswith(("## Pwned", "# heading", "| a |")), line
    assert "\\<img src=x onerror=alert(1)\\>" in text
    # Ids stay code spans, with no backtick of their own to close them early.
    assert "`t-1'<script>' | a |`" in text


def test_csv_export_defuses_formulas() -> None:
    out = io.StringIO()
    record = {
        "source": "gw",
        "transaction_id": '=HYPERLINK("https://evil.example","x")',
        "customer_id": "+cmd|' /C calc'!A0",
        "event_type": "@SUM(1+1)",
        "properties": {"a": 1},
        "outcome": "missing",
        "attempts": 2,
    }
    write_csv(iter([record]), out)
    (row,) = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert row["transaction_id"].startswith("'=")
    assert row["customer_id"].startswith("'+")
    assert row["event_type"].startswith("'@")
    assert row["attempts"] == "2"


def test_json_lines_escape_terminal_controls_and_keep_the_values() -> None:
    record = {"customer_id": "a\x1b[2J\x9b31m\u202eb"}
    line = json_line(record)
    assert not any(c in line for c in "\x1b\x9b\u202e")
    assert json.loads(line) == record


def test_terminal_output_carries_no_control_characters_from_events() -> None:
    console = Console(record=True, width=200)
    row = RateRow(
        group="evil\x1b]0;owned\x07\x1b[2J\x9b31m\u202eexe.txt",
        counts={"matched": 9, "missing": 1},
        sampled=10,
        decided=10,
        leaks=1,
        leak_rate=0.1,
        lower=0.02,
        upper=0.4,
    )
    view = StatusView(
        now=datetime(2026, 11, 20, tzinfo=UTC),
        window=timedelta(hours=24),
        overall=row,
        by_source=[],
        by_event_type=[row],
        top_customers=[],
        open_alerts=[],
        outbox={},
        last_cycle=None,
    )
    print_status(console, view)
    text = console.export_text()
    assert not any(c in text for c in "\x1b\x07\x9b\u202e"), repr(text)
    assert "evil]0;owned[2J31mexe.txt" in text


def test_one_line_keeps_text_and_drops_controls() -> None:
    assert one_line("a\r\nb\tc\x00d\u2028e") == "a b cd e"
