"""Totals reconciliation as a stage: expected from the sources, billed from `/v1/usage`.

I/O (sources, Metronome, database). The arithmetic is `core.reconcile`'s; this stage
reads what leakwatch learned from search answers (metric definitions, aliases), reads
each day of the sources once, fetches Metronome's day aggregates for the customers and
metrics in scope (all pages, within the usage endpoint's own rate), compares, explains
each gap with what sampling saw for the same customer and metric, and saves the rows.

A day is recomputed on every run until it is older than `settle` (late events, late
aliases); then it is settled and kept as it was.
"""

from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, time, timedelta

import structlog

from leakwatch.core.pricing import Price
from leakwatch.core.reconcile import (
    CustomerAlias,
    ExpectedTotals,
    Gap,
    MetricDefinition,
    ReconciledRow,
    ReconcileResult,
    billed_by_key,
    compute_gaps,
    explain_with_samples,
    gap_money,
    reconcile_days,
)
from leakwatch.metronome.client import SearchClient
from leakwatch.sources.base import Source
from leakwatch.store.billing import load_aliases, load_definitions, sample_outcomes, save_reconciled
from leakwatch.store.db import SessionFactory, transaction


def run_reconciliation(
    *,
    sessions: SessionFactory,
    sources: Sequence[Source],
    client: SearchClient,
    now: datetime,
    days: int = 7,
    settle: timedelta = timedelta(days=3),
    tolerance: float = 0.001,
    prices: Mapping[str, Price] | None = None,
    customer: str | None = None,
    pinned_aliases: Mapping[str, str] | None = None,
    expectations: Mapping[str, Mapping[str, frozenset[str]]] | None = None,
) -> ReconcileResult:
    """Reconcile the last `days` complete UTC days; save and return every row.

    Raises what the Metronome client raises (TokenRejected, RequestFailed): without
    the billed side there is no gap to report, and none is saved.
    """
    log = structlog.get_logger()
    day_list = reconcile_days(now, days)
    result = ReconcileResult(days=day_list)
    if not day_list:
        result.notes.append("no complete day inside Metronome's 34-day window")
        return result
    with transaction(sessions) as session:
        definitions = load_definitions(session)
        aliases = load_aliases(session)
    # Pinned aliases win over learned ones: the operator knows an alias never sampled.
    for alias, customer_id in (pinned_aliases or {}).items():
        known = aliases.get(alias)
        aliases[alias] = CustomerAlias(alias, customer_id, known.customer_name if known else None)
    if not definitions:
        result.notes.append(
            "no billable metric learned yet: run `leakwatch check` first (reconciliation "
            "learns each metric's definition from search answers)"
        )
        return result
    result.skipped_metrics = {
        d.name: reason
        for d in definitions.values()
        if (reason := d.why_not_reproducible) is not None
    }
    reproducible = {k: d for k, d in definitions.items() if d.reproducible}
    in_scope = _customers_in_scope(aliases, customer)
    if customer is not None and not in_scope:
        result.notes.append(f"no known customer or alias {customer!r}")
        return result
    start = datetime.combine(day_list[0], time(), UTC)
    end = datetime.combine(day_list[-1] + timedelta(days=1), time(), UTC)
    expected = _expected(sources, reproducible, aliases, expectations or {}, start, end)
    result.unattributed = {}
    for (alias, _day), count in sorted(expected.unattributed.items()):
        result.unattributed[alias] = result.unattributed.get(alias, 0) + count
    customer_ids = sorted(in_scope)
    billed_rows = (
        client.fetch_usage(
            starting_on=start,
            ending_before=end,
            window_size="DAY",
            customer_ids=customer_ids,
            metric_ids=sorted(reproducible),
        )
        if reproducible and customer_ids
        else []
    )
    names = {a.customer_id: a.customer_name for a in aliases.values() if a.customer_name}
    gaps = compute_gaps(
        {k: v for k, v in expected.totals.items() if k.customer_id in in_scope},
        billed_by_key(billed_rows),
        definitions=reproducible,
        customer_names=names,
        days=day_list,
        customers=customer_ids,
        tolerance=tolerance,
        absolute_tolerance=1e-6,
    )
    result.settled_before = (now - settle).astimezone(UTC).date()
    with transaction(sessions) as session:
        outcomes = sample_outcomes(session, start=start, end=end)
        save_reconciled(
            session,
            gaps,
            days=day_list,
            settled_before=result.settled_before,
            now=now,
        )
    for gap in gaps:
        definition = reproducible[gap.metric_id]
        result.rows.append(
            ReconciledRow(
                gap=gap,
                money=gap_money(definition, gap.difference, prices or {}),
                explanation=explain_with_samples(_outcomes_for(gap, definition, aliases, outcomes)),
            )
        )
    log.info(
        "reconcile.finished",
        days=len(day_list),
        rows=len(result.rows),
        flagged=len(result.flagged),
        skipped_metrics=len(result.skipped_metrics),
        unattributed=sum(result.unattributed.values()),
    )
    return result


def _customers_in_scope(aliases: Mapping[str, CustomerAlias], customer: str | None) -> set[str]:
    if customer is None:
        return {a.customer_id for a in aliases.values()}
    return {
        a.customer_id
        for a in aliases.values()
        if customer in (a.alias, a.customer_id, a.customer_name)
    }


def _expected(
    sources: Sequence[Source],
    definitions: Mapping[str, MetricDefinition],
    aliases: Mapping[str, CustomerAlias],
    expectations: Mapping[str, Mapping[str, frozenset[str]]],
    start: datetime,
    end: datetime,
) -> ExpectedTotals:
    totals = ExpectedTotals(
        definitions=list(definitions.values()),
        aliases={alias: a.customer_id for alias, a in aliases.items()},
    )
    for source in sources:
        expected_by_type = expectations.get(source.name, {})
        for event in source.iter_events(start, end):
            totals.add(
                customer_id=event.customer_id,
                event_type=event.event_type,
                day=event.timestamp.astimezone(UTC).date(),
                properties=event.properties,
                expected_metrics=expected_by_type.get(event.event_type, frozenset()),
                identity=hash((event.transaction_id, event.payload_hash)),
            )
    return totals


def _outcomes_for(
    gap: Gap,
    definition: MetricDefinition,
    aliases: Mapping[str, CustomerAlias],
    outcomes: Mapping[tuple[str, str, date], Mapping[str, int]],
) -> dict[str, int]:
    """Sampling outcomes for the gap's customer (any alias), metric's event types and day."""
    customer_aliases = {a.alias for a in aliases.values() if a.customer_id == gap.customer_id}
    merged: dict[str, int] = {}
    for (alias, event_type, day), counts in outcomes.items():
        if day != gap.day or alias not in customer_aliases:
            continue
        if definition.event_type_in is not None and event_type not in definition.event_type_in:
            continue
        if definition.event_type_not_in is not None and event_type in definition.event_type_not_in:
            continue
        for outcome, count in counts.items():
            merged[outcome] = merged.get(outcome, 0) + count
    return merged
