"""Terminal rendering for the CLI: rich tables and progress. Writes to a Console only."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from leakwatch.core.formatting import (
    format_count,
    format_instant,
    format_interval,
    format_money,
    format_percent,
)
from leakwatch.core.text import one_line

if TYPE_CHECKING:
    # Types only: each command imports the views it prints, not every view's
    # dependencies (the store, the Metronome client), so `sample` starts fast.
    from leakwatch.core.reconcile import ReconcileResult
    from leakwatch.core.results import AlertResult, CycleSummary, SendReport
    from leakwatch.sources.base import SampleResult
    from leakwatch.store.alerts import OpenAlert
    from leakwatch.views.lookup import LookupResult
    from leakwatch.views.sources import SourcesView
    from leakwatch.views.status import RateRow, StatusView


def _markup(value: object) -> str:
    """A value from events or Metronome, for rich markup: one line, no control
    characters (an ESC would drive the terminal), brackets escaped ("[x]" is markup)."""
    return escape(one_line(str(value)))


def _plain(value: object) -> str:
    """A value from events or Metronome, for a `markup=False` print: one line, no
    control characters."""
    return one_line(str(value))


LEAK_ORDER = ("missing", "unmatched_customer", "unmatched_metric", "duplicate", "mismatch")


def print_cycle_summary(
    out: Console, summary: CycleSummary, alerts: Sequence[AlertResult], sent: SendReport | None
) -> None:
    duration = (
        (summary.finished_at - summary.started_at).total_seconds() if summary.finished_at else 0
    )
    out.print(
        f"cycle {summary.run_id} {summary.status} in {duration:.1f}s: "
        f"checked {summary.checked} ({summary.rechecked} re-checks), "
        f"{summary.search_requests} search calls, {summary.search_rate_limited} rate-limited",
        markup=False,
    )
    table = Table(title="sources", title_justify="left")
    for column in ("source", "new lines", "new events", "bad lines", "drawn", "new samples"):
        table.add_column(column, justify="right" if column != "source" else "left")
    for report in summary.sources.values():
        table.add_row(
            _markup(report.name),
            str(report.lines_read),
            str(report.new_events),
            str(report.bad_lines),
            str(report.drawn),
            str(report.newly_recorded),
        )
    out.print(table)
    for report in summary.sources.values():
        for warning in report.warnings:
            out.print(f"  warning ({report.name}): {_plain(warning)}", markup=False, style="yellow")
        if report.error:
            out.print(f"  error ({report.name}): {_plain(report.error)}", markup=False, style="red")
    if summary.verdicts:
        verdicts = Table(title="verdicts this cycle", title_justify="left")
        verdicts.add_column("outcome")
        verdicts.add_column("events", justify="right")
        for outcome, count in sorted(summary.verdicts.items(), key=lambda kv: -kv[1]):
            verdicts.add_row(outcome, str(count))
        out.print(verdicts)
    if summary.lookup_errors:
        failed = sum(summary.lookup_errors.values())
        reason, count = summary.lookup_errors.most_common(1)[0]
        out.print(
            f"{failed} lookup(s) failed, recorded as `error` and looked up again later; "
            f"{'why' if count == failed else 'mostly'}: {_plain(reason)}",
            markup=False,
            style="red",
        )
    if summary.healed:
        out.print(f"{summary.healed} unmatched-customer event(s) healed", markup=False)
    if summary.not_looked_up:
        out.print(
            f"{summary.not_looked_up} event(s) not looked up in time; they stay due",
            markup=False,
            style="yellow",
        )
    changed = [a for a in alerts if a.notification is not None]
    for alert in changed:
        scope = f" [{_plain(alert.scope)}]" if alert.scope else ""
        out.print(
            f"alert {alert.rule_name}{scope}: {alert.status.value} — {_plain(alert.reason)}",
            markup=False,
            style="bold red" if alert.status.value == "firing" else None,
        )
    if sent is None:
        if changed:
            out.print("(Slack not configured: alerts are stored and shown by `leakwatch status`)")
    elif sent.sent or sent.retried or sent.dead:
        out.print(
            f"notifications: {sent.sent} sent, {sent.retried} to retry, {sent.dead} given up",
            markup=False,
        )


# Column headers for the leaking outcomes, short enough for an 80-column terminal.
SHORT_OUTCOME = {
    "missing": "missing",
    "unmatched_customer": "no customer",
    "unmatched_metric": "no metric",
    "duplicate": "duplicate",
    "mismatch": "mismatch",
}


WIDE_TABLE_COLUMNS = 120


def _rate_table(
    title: str,
    rows: Sequence[RateRow],
    *,
    volume: bool,
    currency: str = "$",
    width: int = WIDE_TABLE_COLUMNS,
) -> Table:
    """Rates per group: one column per leaking outcome when wide, one list when narrow.

    Nothing is cut ("compute_secon…"): names and intervals fold onto a second line if
    they must, and below 120 columns the outcome counts share one column, so an
    80-column terminal keeps every figure.
    """
    wide = width >= WIDE_TABLE_COLUMNS
    table = Table(title=title, title_justify="left")
    table.add_column("group", overflow="fold", min_width=8)
    if wide:
        table.add_column("sampled", justify="right")
    table.add_column("decided", justify="right")
    if wide:
        for name in LEAK_ORDER:
            table.add_column(SHORT_OUTCOME[name], justify="right")
    else:
        table.add_column("leaks by outcome", overflow="fold", min_width=12)
    table.add_column("leak rate (95% CI)", justify="right", overflow="fold", min_width=13)
    # Money shares the volume column: one more column would squeeze the intervals.
    money = volume and any(r.revenue_at_risk_per_day is not None for r in rows)
    if volume:
        table.add_column(
            "≈ leaked/day (at risk)" if money else "≈ leaked/day",
            justify="right",
            overflow="fold",
        )
    for row in rows:
        # Group names come from events: escaped, or "[x]" would vanish as markup.
        cells = [_markup(row.group)]
        if wide:
            cells.append(str(row.sampled))
        cells.append(str(row.decided))
        if wide:
            cells += [str(row.counts.get(name, 0) or "") for name in LEAK_ORDER]
        else:
            cells.append(
                ", ".join(
                    f"{row.counts[name]} {SHORT_OUTCOME[name]}"
                    for name in LEAK_ORDER
                    if row.counts.get(name)
                )
                or "none"
            )
        if row.decided:
            cells.append(format_interval(row.leak_rate, row.lower, row.upper))
        else:
            cells.append("no decided samples")
        if volume:
            cell = "–" if row.leaked_per_day is None else format_count(row.leaked_per_day)
            if row.revenue_at_risk_per_day is not None:
                cell += f" ({format_money(row.revenue_at_risk_per_day, currency)})"
            cells.append(cell)
        table.add_row(*cells)
    return table


def print_status(out: Console, view: StatusView) -> None:
    hours = view.window.total_seconds() / 3600
    out.print(f"samples drawn in the last {hours:g}h, as of {format_instant(view.now)}")
    if view.overall.sampled == 0:
        out.print("no samples in this window yet: run `leakwatch check` or `leakwatch run`")
    else:
        out.print(
            _rate_table(
                "by source",
                [view.overall, *view.by_source],
                volume=True,
                currency=view.currency,
                width=out.width,
            )
        )
        out.print(
            _rate_table(
                "by event type",
                view.by_event_type,
                volume=True,
                currency=view.currency,
                width=out.width,
            )
        )
        if view.top_customers:
            out.print(
                _rate_table(
                    "customers with leaks", view.top_customers, volume=False, width=out.width
                )
            )
        undecided = {k: view.overall.counts.get(k, 0) for k in ("pending", "error", "expired")}
        if any(undecided.values()):
            out.print(
                "not in rates: " + ", ".join(f"{v} {k}" for k, v in undecided.items() if v),
                markup=False,
            )
    if view.reconciled:
        table = Table(title="billed vs sent, reconciled over the last 7 days (exact)")
        for header in ("metric", "expected", "billed", "gap", "days flagged"):
            table.add_column(header, overflow="fold")
        for r in view.reconciled:
            gap = "" if r.billed_ratio is None else f" ({format_percent(r.billed_ratio - 1)})"
            table.add_row(
                _markup(r.metric),
                _amount(r.expected),
                _amount(r.billed),
                _amount(r.difference) + gap,
                f"{r.flagged_days} of {r.days}",
            )
        out.print(table)
    print_alerts(out, view.open_alerts)
    if view.outbox:
        out.print(
            "Slack notifications: "
            + ", ".join(
                f"{count} {OUTBOX_WORDS.get(status, status)}"
                for status, count in sorted(view.outbox.items())
            ),
            markup=False,
        )
    if view.last_cycle:
        last = view.last_cycle
        when = (
            f"at {format_instant(datetime.fromisoformat(last['finished_at']))}"
            if last.get("finished_at")
            else f"(started at {format_instant(datetime.fromisoformat(last['started_at']))})"
        )
        line = f"last cycle: #{last['run_id']} {last['status']} {when}"
        if last.get("error"):
            line += f" — {_plain(last['error'])}"
        out.print(line, markup=False)
    shares = [
        f"{name} {format_percent(share.rate)} ({share.bad:,} of {share.bad + share.usable:,})"
        for name, share in view.bad_lines.items()
        if share.rate is not None
    ]
    if shares:
        out.print("bad lines: " + ", ".join(_plain(s) for s in shares), markup=False)
    estimated = sorted(name for name, state in view.volumes.items() if state == "estimated")
    if estimated:
        out.print(
            "volumes estimated from the draw (the tail is still counting the history): "
            + ", ".join(estimated),
            markup=False,
        )
    elif view.volumes:
        out.print("volumes counted by the tail", markup=False)


# What each outbox status means to the person reading `status`.
OUTBOX_WORDS = {
    "pending": "waiting to be sent",
    "dead": "given up after a day of retries (see the log)",
    "skipped": "not sent (Slack is not configured, or the alert is silenced)",
}


def print_alerts(out: Console, alerts: Sequence[OpenAlert]) -> None:
    if not alerts:
        out.print("no open alerts")
        return
    notes = {alert.id: _alert_note(alert) for alert in alerts}
    columns = ["alert", "scope", "status", "rate (CI)"]
    if any(notes.values()):
        columns.append("note")  # only when there is one: 80 columns are tight
    table = Table(title="open alerts", title_justify="left")
    for column in columns:
        table.add_column(column, overflow="fold", min_width=13 if column == "rate (CI)" else None)
    for alert in alerts:
        rate = (
            format_interval(alert.rate, alert.lower, alert.upper)
            if alert.rate is not None and alert.lower is not None and alert.upper is not None
            else ""
        )
        cells = [
            _markup(alert.rule_name),
            _markup(alert.scope or "all"),
            f"{alert.status} ({alert.severity})"
            + (f" since {format_instant(alert.since)}" if alert.since else ""),
            rate,
        ]
        if "note" in columns:
            cells.append(notes[alert.id])
        table.add_row(*cells)
    out.print(table)
    for alert in alerts:
        if alert.why:
            scope = f" [{alert.scope}]" if alert.scope else ""
            out.print(f"why {alert.rule_name}{scope}: {alert.why}", markup=False)


def _alert_note(alert: OpenAlert) -> str:
    note = []
    if alert.silenced_until:
        note.append(f"silenced until {format_instant(alert.silenced_until)}")
    if alert.acked_at:
        note.append("acknowledged")
    return ", ".join(note)


def print_lookup(out: Console, results: Sequence[LookupResult]) -> None:
    for result in results:
        out.print(f"[bold]{_markup(result.transaction_id)}[/]", highlight=False)
        if result.error:
            out.print(f"  lookup failed: {_plain(result.error)}", markup=False, style="red")
            continue
        if not result.items:
            out.print("  Metronome holds nothing under this id")
        for item in result.items:
            customer = item.get("matched_customer") or {}
            metrics = item.get("matched_billable_metrics") or item.get("billable_metrics") or []
            names = ", ".join(str(m.get("name")) for m in metrics if isinstance(m, dict))
            line = (
                f"  item {item.get('id')}: customer_id={item.get('customer_id')} "
                f"type={item.get('event_type')} at {item.get('timestamp')}"
                f"{' DUPLICATE' if item.get('is_duplicate') else ''}; "
                f"customer={customer.get('name') or customer.get('id') or 'none'}; "
                f"metrics={names or 'none'}"
            )
            out.print(_plain(line), markup=False)
        for verdict in result.verdicts:
            where = f" ({verdict.source})" if verdict.source else ""
            recorded = f"; recorded {verdict.recorded_outcome}" if verdict.recorded_outcome else ""
            out.print(
                _plain(f"  → {verdict.outcome}{where}: {verdict.reason}{recorded}"), markup=False
            )


def print_sample_counts(err: Console, result: SampleResult) -> None:
    err.print(
        f"drew {len(result.events)} of ≈{result.population:,.0f} events in the window "
        f"{format_instant(result.window.start)} – {format_instant(result.window.end)}",
        markup=False,
    )
    for stratum, population in sorted(result.strata_populations.items()):
        drawn = sum(1 for e in result.events if e.stratum == stratum)
        err.print(f"  stratum {_plain(stratum)}: {drawn} of ≈{population:,.0f}", markup=False)
    for reason, count in sorted(result.bad_lines.items()):
        err.print(f"  bad lines ({reason}): {count}", markup=False)
    for warning in result.warnings:
        err.print(f"warning: {_plain(warning)}", markup=False, style="yellow")


@contextmanager
def progress_bar(console: Console, label: str) -> Iterator[Callable[[int, int], None] | None]:
    """A byte progress bar on a terminal; nothing when output is piped."""
    if not console.is_terminal:
        yield None
        return
    columns: list[Any] = [
        TextColumn(label),
        BarColumn(),
        DownloadColumn(),
        TimeRemainingColumn(),
    ]
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task(label, total=None)

        def update(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total or None)

        yield update


@contextmanager
def lookup_progress(console: Console) -> Iterator[Callable[[int, int, int], None]]:
    """Progress of a cycle's lookups: a bar on a terminal, a few plain lines otherwise.

    The bar shows done / due, the 429s met (the client waits them out) and the time
    left; piped, a line at each quarter, so a cron log shows a long cycle moving.
    """
    if not console.is_terminal:
        reported = [0]

        def line(done: int, due: int, rate_limited: int) -> None:
            quarter = 4 * done // max(due, 1)
            if quarter > reported[0] or done == due:
                reported[0] = quarter
                waits = f", {rate_limited} rate-limited" if rate_limited else ""
                console.print(f"looked up {done:,} of {due:,}{waits}", markup=False)

        yield line
        return
    columns: list[Any] = [
        TextColumn("looking up"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[waits]}"),
        TimeRemainingColumn(),
    ]
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task("lookups", total=None, waits="")

        def update(done: int, due: int, rate_limited: int) -> None:
            waits = f"{rate_limited} rate-limited (waiting them out)" if rate_limited else ""
            progress.update(task, completed=done, total=due, waits=waits)

        yield update


def _amount(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.2f}"


def _signed_money(value: float, currency: str) -> str:
    return f"{'-' if value < 0 else ''}{currency}{abs(value):,.2f}"


def print_reconciliation(
    out: Console, result: ReconcileResult, *, currency: str = "$", show_all: bool = False
) -> None:
    """Expected vs billed per customer × metric × day: flagged rows, then what was skipped."""
    if result.days:
        out.print(
            f"expected (from your record) vs billed (Metronome /v1/usage), "
            f"{result.days[0]} to {result.days[-1]} (UTC days)",
            markup=False,
        )
    for note in result.notes:
        out.print(_plain(note), markup=False)
    shown = result.rows if show_all else result.flagged
    if result.rows:
        table = Table(title="gaps" if not show_all else "all customer × metric × days")
        for header in ("day", "customer", "metric", "expected", "billed", "gap", "money", "why"):
            table.add_column(header, overflow="fold")
        for row in shown:
            gap = row.gap
            ratio = f" ({gap.difference / gap.expected:+.1%})" if gap.expected else ""
            table.add_row(
                gap.day.isoformat(),
                _markup(gap.customer_name or gap.customer_id),
                _markup(gap.metric_name),
                _amount(gap.expected),
                _amount(gap.billed),
                _amount(gap.difference) + ratio,
                "–" if row.money is None else _signed_money(row.money, currency),
                _markup(row.explanation if gap.status.value != "ok" else ""),
            )
        if shown:
            out.print(table)
        ok = len(result.rows) - len(result.flagged)
        out.print(
            f"{len(result.flagged)} flagged, {ok} of {len(result.rows)} within tolerance",
            markup=False,
        )
    if result.skipped_metrics:
        out.print(
            "not reconciled: "
            + "; ".join(
                f"{_plain(name)} ({why})" for name, why in sorted(result.skipped_metrics.items())
            ),
            markup=False,
        )
    if result.unattributed:
        top = sorted(result.unattributed.items(), key=lambda kv: -kv[1])[:5]
        out.print(
            "events under customer ids no lookup has resolved to a Metronome customer "
            "(an alias Metronome does not know, or one not sampled yet; pin it in "
            "[reconcile] aliases): " + ", ".join(f"{_plain(a)} {n}" for a, n in top),
            markup=False,
        )


DAYS_SHOWN = 7


def _size(count: int) -> str:
    value = float(count)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1000:
            return f"{value:,.0f} {unit}" if unit == "B" else f"{value:,.1f} {unit}"
        value /= 1000
    return f"{value:,.1f} TB"


def print_sources(out: Console, view: SourcesView) -> None:
    """One block per source: what it is, its window, volumes, bad lines, read position."""
    if not view.sources:
        out.print("no [[sources]] configured; `leakwatch init` writes an example")
        return
    for source in view.sources:
        inv = source.inventory
        out.print(f"[bold]{_markup(inv.name)}[/bold] ({inv.kind}, {_markup(inv.storage)})")
        out.print(f"  location: {_plain(inv.location)}", markup=False)
        if inv.error:
            out.print(f"  cannot list: {_plain(inv.error)}", markup=False)
        if inv.kind == "sql":
            out.print(f"  sampling: {inv.sampling}", markup=False)
        else:
            noun = "objects" if inv.storage == "objects" else "files"
            line = f"  {inv.file_count} {noun}, {_size(inv.total_bytes)}; sampling: {inv.sampling}"
            out.print(line, markup=False)
            if inv.indexed or inv.not_indexed:
                out.print(
                    f"  .gz seek indexes: {inv.indexed} built, {inv.not_indexed} not yet "
                    "(built on the first draw that needs them)",
                    markup=False,
                )
        out.print(
            f"  window: {source.window_start:%Y-%m-%d %H:%M} → "
            f"{source.window_end:%Y-%m-%d %H:%M} UTC",
            markup=False,
        )
        days = sorted(source.events_per_day)[-DAYS_SHOWN:]
        if days:
            types = sorted({t for d in days for t in source.events_per_day[d]})
            table = Table(title=f"events per day (last {len(days)} UTC days counted)")
            table.add_column("day")
            for name in types:
                table.add_column(_markup(name), justify="right")
            for day in days:
                counts = source.events_per_day[day]
                table.add_row(day.isoformat(), *(f"{counts.get(t, 0):,}" for t in types))
            out.print(table)
        else:
            out.print("  no events counted yet: run `leakwatch check`", markup=False)
        if source.bad_lines:
            share = source.bad_line_rate
            rate = "" if share is None else f" ({format_percent(share)})"
            total = sum(b.count for b in source.bad_lines)
            out.print(f"  bad lines in the window: {total:,}{rate}", markup=False)
            for bad in source.bad_lines:
                out.print(f"    {bad.reason}: {bad.count:,}", markup=False)
                for example in bad.examples:
                    out.print(f"      e.g. {_plain(example)[:160]}", markup=False)
        else:
            out.print("  bad lines in the window: none", markup=False)
        for position in source.read_positions[-5:]:
            if inv.kind == "sql":
                where = (
                    f"watermark {format_instant(position.last_event_at)}"
                    if position.last_event_at is not None
                    else "no watermark yet"
                )
            else:
                where = f"{position.offset:,} of {position.size:,} bytes, {position.lines:,} lines"
            at = format_instant(position.updated_at)
            out.print(f"  read {_plain(position.path)}: {where} (at {at})", markup=False)
        if source.last_scan_at is not None:
            out.print(f"  last tail: {format_instant(source.last_scan_at)}", markup=False)
        for note in inv.notes:
            out.print(f"  {note}", markup=False)
