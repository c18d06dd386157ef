"""Render a ReportContent as Markdown, a self-contained HTML page, JSON and Slack blocks.

Pure: strings in, strings out. The HTML page embeds its CSS and the trend chart (a
base64 PNG), loads nothing from anywhere, and reflows to a phone's width.
"""

import base64
import html
import json
import re
from collections.abc import Sequence

from leakwatch.core.formatting import (
    format_count,
    format_instant,
    format_money,
    format_percent,
    format_rate_interval,
)
from leakwatch.core.report_content import (
    LEAK_ORDER,
    ReportContent,
    SegmentReport,
    short_title,
    week_label,
)
from leakwatch.core.stats import Estimate, RateEstimate
from leakwatch.core.text import code_text, escape_mrkdwn, mrkdwn, one_line

SLACK_SECTION_LIMIT = 3000


def _rate(rate: RateEstimate | None) -> str:
    return format_rate_interval(rate) if rate is not None else "—"


def _count_range(estimate: Estimate | None) -> str:
    if estimate is None:
        return "—"
    return (
        f"≈ {format_count(estimate.point)} "
        f"({format_count(estimate.lo)}–{format_count(estimate.hi)})"
    )


def _money_range(estimate: Estimate | None, currency: str) -> str:
    if estimate is None:
        return "—"
    return (
        f"≈ {format_money(estimate.point, currency)} "
        f"({format_money(estimate.lo, currency)}–{format_money(estimate.hi, currency)})"
    )


def _change(segment: SegmentReport) -> str:
    if segment.leak_rate_change_pp is None or segment.previous_leak_rate is None:
        return "—"
    sign = "+" if segment.leak_rate_change_pp > 0 else ""
    return (
        f"{sign}{segment.leak_rate_change_pp:.2f} pp "
        f"(from {format_percent(segment.previous_leak_rate.rate)})"
    )


def _volume(value: float | None) -> str:
    return f"{value:,.0f}" if value is not None else "—"


def _table_rows(content: ReportContent) -> tuple[list[str], list[list[str]]]:
    """The per-segment table shared by Markdown and HTML.

    What finance reads comes first (what leaked, how much money, which way it moves),
    so a phone shows it before the table scrolls; the sampling counts behind it follow.
    """
    header = [
        "event type",
        "leak rate (95% CI)",
        "revenue at risk",
        "leaked events",
        "vs previous week",
        "volume",
        "sampled",
        "decided",
        "leaking",
        "source",
    ]
    rows = [
        [
            s.event_type,
            _rate(s.leak_rate),
            _money_range(s.revenue_at_risk, content.currency),
            _count_range(s.estimated_leaked_events),
            _change(s),
            _volume(s.volume_events),
            f"{s.sampled:,}",
            f"{s.decided:,}",
            f"{s.leaking:,}",
            s.source,
        ]
        for s in content.segments
    ]
    return header, rows


def _outcome_rows(content: ReportContent) -> tuple[list[str], list[list[str]]]:
    header = ["source", "event type", "outcome", "count", "share of decided (95% CI)"]
    rows = [
        [s.source, s.event_type, o.outcome, f"{o.count:,}", _rate(o.rate)]
        for s in content.segments
        for o in s.outcomes
        if o.count > 0
    ]
    return header, rows


def _trend_rows(content: ReportContent) -> tuple[list[str], list[list[str]]]:
    header = ["week", "decided", "leak rate (95% CI)"] + [o.value for o in LEAK_ORDER]
    rows = [
        [p.week, f"{p.decided:,}", _rate(p.leak_rate)]
        + [format_percent(p.by_outcome.get(o.value, 0.0)) if p.decided else "—" for o in LEAK_ORDER]
        for p in content.trend
    ]
    return header, rows


def _customer_rows(content: ReportContent) -> tuple[list[str], list[list[str]]]:
    header = ["customer", "event type", "decided", "leaking", "leak rate (95% CI)"]
    rows = [
        [c.customer_id, c.event_type, f"{c.decided:,}", f"{c.leaking:,}", _rate(c.leak_rate)]
        for c in content.top_customers
    ]
    return header, rows


def _alert_rows(content: ReportContent) -> tuple[list[str], list[list[str]]]:
    header = ["at", "rule", "scope", "transition", "episode"]
    rows = [
        [
            format_instant(a.at),
            a.rule_name,
            a.scope or "all",
            a.transition,
            str(a.episode),
        ]
        for a in content.alerts
    ]
    return header, rows


def _health_lines(content: ReportContent) -> list[str]:
    h = content.health
    cycles = f"{h.cycles_run:,} check cycles ran"
    if h.cycles_expected is not None:
        cycles += f" of {h.cycles_expected:,} expected ({h.cycles_missed:,} missed)"
    if h.cycles_failed:
        cycles += f", {h.cycles_failed:,} failed"
    lines = [
        cycles,
        f"{h.search_requests:,} search calls, {h.search_rate_limited:,} rate-limited (429), "
        f"{h.search_errors:,} errors",
        f"{h.bad_lines_total:,} unusable source lines",
    ]
    lines += [f"{b.source}: {b.count:,} × {b.reason}" for b in h.bad_lines]
    return lines


def _example_lines(content: ReportContent) -> list[tuple[str, list[str]]]:
    """Each example as `id` (source/event type, customer): only the id is code to copy."""
    return [
        (
            outcome,
            [
                f"`{code_text(e.transaction_id)}` "
                f"({e.source}/{code_text(e.event_type)}, {code_text(e.customer_id)})"
                for e in ex
            ],
        )
        for outcome, ex in content.examples.items()
    ]


def _totals_line(content: ReportContent) -> str:
    t = content.totals
    parts = [f"{t.sampled:,} sampled", f"{t.decided:,} decided", f"{t.leaking:,} leaking"]
    if t.leak_rate is not None:
        parts.append(f"leak rate {_rate(t.leak_rate)}")
    if t.estimated_leaked_events is not None:
        parts.append(f"leaked events {_count_range(t.estimated_leaked_events)}")
    if t.revenue_at_risk is not None:
        parts.append(f"revenue at risk {_money_range(t.revenue_at_risk, content.currency)}")
    return " · ".join(parts)


# ----------------------------------------------------------------------- Markdown


def _quantity(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.2f}"


def _billed_share(ratio: float | None) -> str:
    return "–" if ratio is None else format_percent(ratio)


BILLED_TITLE = "Billed vs sent (exact, from Metronome's usage totals)"


def _billed_day_rows(content: ReportContent) -> tuple[list[str], list[list[str]]]:
    section = content.billed_vs_sent
    rows = [] if section is None else section.by_day
    return ["Day", "Metric", "Sent", "Billed", "Billed share"], [
        [
            r.day.isoformat(),
            r.metric,
            _quantity(r.expected),
            _quantity(r.billed),
            _billed_share(r.billed_ratio),
        ]
        for r in rows
    ]


def _billed_gap_rows(content: ReportContent) -> tuple[list[str], list[list[str]]]:
    section = content.billed_vs_sent
    rows = [] if section is None else section.biggest_gaps
    return ["Day", "Customer", "Metric", "Sent", "Billed", "Gap"], [
        [
            r.day.isoformat(),
            r.customer,
            r.metric,
            _quantity(r.expected),
            _quantity(r.billed),
            _quantity(r.difference)
            + ("" if r.billed_ratio is None else f" ({format_percent(r.billed_ratio - 1)})"),
        ]
        for r in rows
    ]


def _billed_line(content: ReportContent) -> str:
    section = content.billed_vs_sent
    if section is None:
        return "No reconciled days this week (see `leakwatch reconcile`)."
    return (
        f"{section.flagged} of {section.rows} customer × metric × days billed outside the "
        "tolerance."
    )


# Markdown's inline syntax, escaped with a backslash: emphasis, code, links and images,
# raw HTML and entities, table pipes, strikethrough, headings; `_` only where it could
# open or close emphasis (not inside a word like api_request).
_MD_SPECIAL = re.compile(r"[\\`*\[\]<>&|~#]|(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])")


def _md_text(text: str) -> str:
    """Text shown as written in Markdown: one line, every inline syntax character escaped."""
    return _MD_SPECIAL.sub(lambda m: "\\" + m.group(0), one_line(text))


def _md_inline(text: str) -> str:
    """Like `_md_text`, but `backticked` parts stay code spans (whose content is literal)."""
    parts = one_line(text).split("`")
    if len(parts) % 2 == 0:  # an unclosed backtick is literal text: escape what follows it
        parts[-2:] = [parts[-2] + "`" + parts[-1]]
    return "`".join(part if i % 2 else _md_text(part) for i, part in enumerate(parts))


def _md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    if not rows:
        return ["_none_", ""]
    lines = [
        "| " + " | ".join(_md_text(h) for h in header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
    ]
    lines += ["| " + " | ".join(_md_text(c) for c in row) + " |" for row in rows]
    return [*lines, ""]


def render_markdown(
    content: ReportContent,
    *,
    chart_filename: str | None = None,
    billed_chart_filename: str | None = None,
) -> str:
    """The report as Markdown (GitHub flavour tables)."""
    out = [f"# Leakage report {week_label(content)}", "", _md_inline(content.summary), ""]
    if content.has_data:
        out += [f"**Totals:** {_totals_line(content)}", ""]
    if chart_filename:
        out += [f"![Weekly leak rate by outcome]({chart_filename})", ""]
    out += ["## By source and event type", "", *_md_table(*_table_rows(content))]
    causes = [s for s in content.segments if s.main_cause is not None]
    if causes:
        out += ["## Main causes", ""]
        for s in causes:
            assert s.main_cause is not None
            out.append(
                f"- {_md_text(s.source)}/{_md_text(s.event_type)}: "
                f"{_md_inline(s.main_cause.description)} "
                f"({format_percent(s.main_cause.share_of_leaks)} of leaks are "
                f"{s.main_cause.outcome})"
            )
        out.append("")
    out += ["## Outcomes", "", *_md_table(*_outcome_rows(content))]
    out += [f"## {BILLED_TITLE}", "", _billed_line(content), ""]
    if content.billed_vs_sent is not None:
        if billed_chart_filename:
            out += [f"![Billed share of sent usage by day]({billed_chart_filename})", ""]
        out += [*_md_table(*_billed_day_rows(content))]
        if content.billed_vs_sent.biggest_gaps:
            out += ["Biggest gaps:", "", *_md_table(*_billed_gap_rows(content))]
    out += ["## Trend (8 weeks)", "", *_md_table(*_trend_rows(content))]
    out += ["## Top customers by leaked events", "", *_md_table(*_customer_rows(content))]
    out += [
        f"## Alerts ({content.alerts_opened} opened, {content.alerts_resolved} resolved)",
        "",
        *_md_table(*_alert_rows(content)),
    ]
    out += ["## Sampler health", "", *[f"- {_md_text(line)}" for line in _health_lines(content)]]
    out.append("")
    out += ["## Example transaction ids", ""]
    examples = _example_lines(content)
    if not examples:
        out += ["_none_", ""]
    for outcome, ids in examples:
        out.append(f"- **{outcome}**: " + ", ".join(_md_inline(i) for i in ids))
    out += ["", "## Notes", "", *[f"- {_md_text(n)}" for n in content.notes], ""]
    out.append(f"_Generated {format_instant(content.generated_at)} by leakwatch._")
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------- HTML

_CSS = """
:root { color-scheme: light; }
* { box-sizing: border-box; }
body { font: 16px/1.5 -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
       margin: 0 auto; padding: 1rem; max-width: 68rem; color: #1d1d1f; background: #fff; }
h1 { font-size: 1.5rem; margin: 0 0 .5rem; }
h2 { font-size: 1.15rem; margin: 1.75rem 0 .5rem; border-bottom: 1px solid #e3e3e3; }
.summary { font-size: 1.1rem; background: #fff7e6; border-left: 4px solid #e69f00;
           padding: .75rem 1rem; margin: 1rem 0; }
.summary.clean { background: #eef8f1; border-color: #009e73; }
.summary.nodata { background: #f2f2f2; border-color: #888; }
.totals { color: #444; }
figure { margin: 1rem 0; }
figure img { width: 100%; height: auto; display: block; border: 1px solid #eee; }
.scroll { overflow-x: auto; -webkit-overflow-scrolling: touch; }
table { border-collapse: collapse; font-size: .9rem; min-width: 100%; }
th, td { padding: .35rem .6rem; border-bottom: 1px solid #eee; text-align: left;
         white-space: nowrap; }
th { background: #fafafa; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
code { font-size: .85rem; background: #f4f4f4; padding: .05rem .25rem; border-radius: 3px; }
ul { padding-left: 1.25rem; }
footer { color: #777; font-size: .8rem; margin-top: 2rem; }
@media (max-width: 600px) { body { padding: .6rem; font-size: 15px; }
  th, td { padding: .3rem .4rem; } }
"""


def _html_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    if not rows:
        return "<p><em>none</em></p>"
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows
    )
    return (
        f'<div class="scroll"><table><thead><tr>{head}</tr></thead>'
        f"<tbody>{body}</tbody></table></div>"
    )


def _inline_code(text: str) -> str:
    """Escape text, then show `backticked` parts as <code>."""
    parts = html.escape(text).split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))


def render_html(
    content: ReportContent, chart_png: bytes | None, billed_png: bytes | None = None
) -> str:
    """A single self-contained page: inline CSS, the chart as a data: URI, no scripts."""
    if not content.has_data:
        summary_class = "summary nodata"
    elif content.totals.leaking == 0:
        summary_class = "summary clean"
    else:
        summary_class = "summary"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{html.escape(short_title(content))}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>Leakage report {html.escape(week_label(content))}</h1>",
        f'<p class="{summary_class}" id="summary">{_inline_code(content.summary)}</p>',
    ]
    if content.has_data:
        parts.append(f'<p class="totals">{html.escape(_totals_line(content))}</p>')
    if chart_png is not None:
        encoded = base64.b64encode(chart_png).decode("ascii")
        parts.append(
            '<figure id="trend-chart"><img alt="Weekly leak rate by outcome, 8 weeks" '
            f'src="data:image/png;base64,{encoded}"></figure>'
        )
    parts += ["<h2>By source and event type</h2>", _html_table(*_table_rows(content))]
    causes = [s for s in content.segments if s.main_cause is not None]
    if causes:
        items = "".join(
            f"<li>{html.escape(s.source)}/{html.escape(s.event_type)}: "
            f"{_inline_code(s.main_cause.description)} "
            f"({format_percent(s.main_cause.share_of_leaks)} of leaks are "
            f"{html.escape(s.main_cause.outcome)})</li>"
            for s in causes
            if s.main_cause is not None
        )
        parts += ["<h2>Main causes</h2>", f"<ul>{items}</ul>"]
    parts += ["<h2>Outcomes</h2>", _html_table(*_outcome_rows(content))]
    parts += [
        f"<h2>{html.escape(BILLED_TITLE)}</h2>",
        f"<p>{_inline_code(_billed_line(content))}</p>",
    ]
    if content.billed_vs_sent is not None:
        if billed_png is not None:
            encoded = base64.b64encode(billed_png).decode("ascii")
            parts.append(
                '<figure id="billed-chart"><img alt="Billed share of sent usage by day" '
                f'src="data:image/png;base64,{encoded}"></figure>'
            )
        parts.append(_html_table(*_billed_day_rows(content)))
        if content.billed_vs_sent.biggest_gaps:
            parts += ["<p>Biggest gaps:</p>", _html_table(*_billed_gap_rows(content))]
    parts += ["<h2>Trend (8 weeks)</h2>", _html_table(*_trend_rows(content))]
    parts += ["<h2>Top customers by leaked events</h2>", _html_table(*_customer_rows(content))]
    parts += [
        f"<h2>Alerts ({content.alerts_opened} opened, {content.alerts_resolved} resolved)</h2>",
        _html_table(*_alert_rows(content)),
    ]
    health = "".join(f"<li>{html.escape(line)}</li>" for line in _health_lines(content))
    parts += ["<h2>Sampler health</h2>", f"<ul>{health}</ul>"]
    parts.append("<h2>Example transaction ids</h2>")
    examples = _example_lines(content)
    if examples:
        items = "".join(
            f"<li><strong>{html.escape(outcome)}</strong>: "
            + ", ".join(_inline_code(i) for i in ids)
            + "</li>"
            for outcome, ids in examples
        )
        parts.append(f"<ul>{items}</ul>")
    else:
        parts.append("<p><em>none</em></p>")
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in content.notes)
    parts += ["<h2>Notes</h2>", f"<ul>{notes}</ul>"]
    parts.append(f"<footer>Generated {format_instant(content.generated_at)} by leakwatch.</footer>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


# --------------------------------------------------------------------------- JSON


def render_json(content: ReportContent) -> str:
    """The same numbers for other tools: `ReportContent.to_dict()` as indented JSON."""
    return json.dumps(content.to_dict(), indent=2, ensure_ascii=False, sort_keys=False) + "\n"


# -------------------------------------------------------------------------- Slack


def _clip(text: str, limit: int = SLACK_SECTION_LIMIT) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def render_slack_text(content: ReportContent) -> str:
    """The message's plain-text fallback: the summary, escaped like the blocks.

    The summary's log-derived names are already on one line with no backtick (core);
    escaping `<>&` leaves no mention or link syntax for Slack to act on.
    """
    return _clip(escape_mrkdwn(content.summary))


def render_slack_blocks(content: ReportContent) -> list[dict[str, object]]:
    """Block Kit for the report's root message; the files follow in its thread."""
    blocks: list[dict[str, object]] = [
        {
            "type": "header",
            "text": {"type": "plain_text", "text": short_title(content)},
        },
        {
            "type": "section",
            "text": mrkdwn(render_slack_text(content)),
        },
    ]
    if content.has_data:
        t = content.totals
        fields = [
            f"*Checked*\n{t.decided:,} of {t.sampled:,} sampled",
            f"*Leak rate*\n{_rate(t.leak_rate)}",
        ]
        if t.estimated_leaked_events is not None:
            fields.append(f"*Leaked events*\n{_count_range(t.estimated_leaked_events)}")
        if t.revenue_at_risk is not None:
            fields.append(f"*Revenue at risk*\n{_money_range(t.revenue_at_risk, content.currency)}")
        blocks.append(
            {
                "type": "section",
                "fields": [mrkdwn(escape_mrkdwn(f)) for f in fields],
            }
        )
    h = content.health
    context = (
        f"{week_label(content)} · alerts: {content.alerts_opened} opened, "
        f"{content.alerts_resolved} resolved · cycles {h.cycles_run}"
        + (f"/{h.cycles_expected}" if h.cycles_expected is not None else "")
        + f" · 429s {h.search_rate_limited} · bad lines {h.bad_lines_total}"
    )
    blocks.append({"type": "context", "elements": [mrkdwn(escape_mrkdwn(context))]})
    return blocks
