"""Prometheus metrics for the daemon, on a registry of its own. In-memory; reads the store.

Counters and the latency histogram are fed as things happen (the search client's
observer, each finished cycle). Figures that live in the store (recent outcomes and
leak rate per source, outbox backlog, bad lines) are read by a few aggregate queries
after each cycle and each outbox pass, and served from that snapshot: a scrape never
touches the database.
"""

import re
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlmodel import Session

from leakwatch import __version__
from leakwatch.core.events import Outcome
from leakwatch.core.exposure import per_day, scope_exposure, segments_of, volumes_in
from leakwatch.core.pricing import Price
from leakwatch.core.reconcile import RECONCILED_WINDOW
from leakwatch.core.results import CycleSummary
from leakwatch.store.billing import MetricTotals, reconciled_totals
from leakwatch.store.outbox import unsent_counts
from leakwatch.store.queries import bad_line_totals, pooled_counts, segment_counts, volume_rows

# Seconds; search calls are paced, so the tail matters more than the median.
SEARCH_LATENCY_BUCKETS_S = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
CYCLE_DURATION_BUCKETS_S = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
RECENT_WINDOW = timedelta(hours=24)


@dataclass(frozen=True)
class StoreSnapshot:
    """What the store said at `taken_at`; served to scrapes until the next refresh."""

    taken_at: datetime | None = None
    # (source, outcome) -> events sampled in the recent window
    samples: dict[tuple[str, str], int] = field(default_factory=dict)
    # source -> weighted leak rate among decided samples of the recent window
    leak_rate: dict[str, float] = field(default_factory=dict)
    # (source, "lower" | "upper") -> the bounds of the leak rate's interval
    leak_rate_interval: dict[tuple[str, str], float] = field(default_factory=dict)
    # (source, leaking outcome) -> its weighted share of decided samples (adds up to leak_rate)
    outcome_rate: dict[tuple[str, str], float] = field(default_factory=dict)
    # source -> estimated leaked events and revenue at risk per day (where volume / prices known)
    leaked_per_day: dict[str, float] = field(default_factory=dict)
    revenue_at_risk_per_day: dict[str, float] = field(default_factory=dict)
    outbox: dict[str, int] = field(default_factory=dict)
    # (source, reason) -> bad lines ever counted
    bad_lines: dict[tuple[str, str], int] = field(default_factory=dict)
    # billable metric -> totals over the reconciled days of the last week
    reconciled: dict[str, MetricTotals] = field(default_factory=dict)


def read_store_snapshot(
    session: Session, *, now: datetime, prices: Mapping[str, Price] | None = None
) -> StoreSnapshot:
    """Run the few aggregate queries behind the store-backed metrics.

    Rates, leaked events and revenue at risk follow the rules `status` uses
    (`OutcomeTally.rate`, `core.exposure`) over the last `RECENT_WINDOW`, so a
    dashboard and `leakwatch status --window 24h` show the same figures.
    """
    since = now - RECENT_WINDOW
    samples: dict[tuple[str, str], int] = {}
    leak_rate: dict[str, float] = {}
    leak_rate_interval: dict[tuple[str, str], float] = {}
    outcome_rate: dict[tuple[str, str], float] = {}
    leaked_per_day: dict[str, float] = {}
    revenue_per_day: dict[str, float] = {}
    segments = segment_counts(session, since=since, until=now)
    volumes = volumes_in(volume_rows(session, since.date(), now.date()), since, now, now)
    for group in pooled_counts(segments, "source"):
        source = group.group
        if source is None:
            continue
        for outcome, count in group.counts.items():
            samples[(source, outcome.value)] = count
        if group.decided == 0:
            continue
        estimate = group.leak_rate()
        leak_rate[source] = estimate.rate
        leak_rate_interval[(source, "lower")] = estimate.interval.lo
        leak_rate_interval[(source, "upper")] = estimate.interval.hi
        for outcome, estimate in group.outcome_rates().items():
            outcome_rate[(source, outcome.value)] = estimate.rate
        exposure = scope_exposure(
            segments, volumes, prices or {}, within=segments_of(source=source)
        )
        leaked = per_day(exposure.leaked_events, RECENT_WINDOW)
        revenue = per_day(exposure.revenue_at_risk, RECENT_WINDOW)
        if leaked is not None:
            leaked_per_day[source] = leaked.point
        if revenue is not None:
            revenue_per_day[source] = revenue.point
    outbox = unsent_counts(session)
    bad_lines = bad_line_totals(session)
    reconciled = {
        t.metric_name: t for t in reconciled_totals(session, since=(now - RECONCILED_WINDOW).date())
    }
    return StoreSnapshot(
        taken_at=now,
        samples=samples,
        leak_rate=leak_rate,
        leak_rate_interval=leak_rate_interval,
        outcome_rate=outcome_rate,
        leaked_per_day=leaked_per_day,
        revenue_at_risk_per_day=revenue_per_day,
        outbox=outbox,
        bad_lines=bad_lines,
        reconciled=reconciled,
    )


def _gauge(
    name: str,
    documentation: str,
    labels: list[str],
    values: Iterable[tuple[tuple[str, ...], float]],
) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, documentation, labels=labels)
    for key, value in sorted(values):
        family.add_metric(list(key), value)
    return family


class _StoreCollector(Collector):
    def __init__(self, metrics: "DaemonMetrics") -> None:
        self._metrics = metrics

    def collect(self) -> Iterable[Metric]:
        snapshot = self._metrics.snapshot
        yield _gauge(
            "leakwatch_samples",
            "Events sampled in the last 24 h, by source and current outcome.",
            ["source", "outcome"],
            snapshot.samples.items(),
        )
        yield _gauge(
            "leakwatch_leak_rate",
            "Weighted leak rate among decided samples of the last 24 h, by source.",
            ["source"],
            (((k,), v) for k, v in snapshot.leak_rate.items()),
        )
        yield _gauge(
            "leakwatch_leak_rate_interval",
            "Bounds of the leak rate's interval (the one `status` shows), by source.",
            ["source", "bound"],
            snapshot.leak_rate_interval.items(),
        )
        yield _gauge(
            "leakwatch_outcome_rate",
            "Weighted share of decided samples of the last 24 h with each leaking outcome "
            "(they add up to leakwatch_leak_rate), by source.",
            ["source", "outcome"],
            snapshot.outcome_rate.items(),
        )
        yield _gauge(
            "leakwatch_leaked_events_per_day",
            "Estimated leaked events per day over the last 24 h, by source "
            "(each event type at its own rate; only where volume is counted).",
            ["source"],
            (((k,), v) for k, v in snapshot.leaked_per_day.items()),
        )
        yield _gauge(
            "leakwatch_revenue_at_risk_per_day",
            "Estimated revenue at risk per day over the last 24 h at list price, by source "
            "(only priced event types).",
            ["source"],
            (((k,), v) for k, v in snapshot.revenue_at_risk_per_day.items()),
        )
        backlog = GaugeMetricFamily(
            "leakwatch_outbox_backlog",
            "Notifications not delivered, by status (pending: will retry; dead: gave up).",
            labels=["status"],
        )
        for status in sorted({"pending", "dead", *snapshot.outbox}):
            backlog.add_metric([status], snapshot.outbox.get(status, 0))
        yield backlog
        bad = CounterMetricFamily(
            "leakwatch_bad_lines",
            "Source lines that could not be used, by source and reason.",
            labels=["source", "reason"],
        )
        for (source, reason), count in sorted(snapshot.bad_lines.items()):
            bad.add_metric([source, reason], count)
        yield bad
        families = {
            "expected": GaugeMetricFamily(
                "leakwatch_reconciled_expected",
                "What the source says Metronome should hold, summed over the reconciled days "
                "of the last 7 (COUNT/SUM metrics), by billable metric.",
                labels=["metric"],
            ),
            "billed": GaugeMetricFamily(
                "leakwatch_reconciled_billed",
                "What Metronome's /v1/usage holds for the same customers and days, by metric.",
                labels=["metric"],
            ),
            "flagged": GaugeMetricFamily(
                "leakwatch_reconciled_flagged_days",
                "Customer × day rows whose billed total is outside the tolerance, by metric.",
                labels=["metric"],
            ),
        }
        for name, totals in sorted(snapshot.reconciled.items()):
            families["expected"].add_metric([name], totals.expected)
            families["billed"].add_metric([name], totals.billed)
            families["flagged"].add_metric([name], totals.flagged)
        yield from families.values()
        if snapshot.taken_at is not None:
            yield GaugeMetricFamily(
                "leakwatch_store_snapshot_timestamp_seconds",
                "When the store-backed figures were last read.",
                value=snapshot.taken_at.timestamp(),
            )


class DaemonMetrics:
    """Every metric the daemon exports, registered on its own `CollectorRegistry`."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.search_calls = Counter(
            "leakwatch_search_calls",
            "Calls to /v1/events/search, by HTTP status (or timeout, connection_error).",
            ["status"],
            registry=r,
        )
        self.search_rate_limited = Counter(
            "leakwatch_search_rate_limited",
            "429 answers from /v1/events/search.",
            registry=r,
        )
        self.search_retries = Counter(
            "leakwatch_search_retries", "Search calls retried, by reason.", ["reason"], registry=r
        )
        self.search_failed_ids = Counter(
            "leakwatch_search_failed_ids",
            "Transaction ids whose lookup failed for good, by reason.",
            ["reason"],
            registry=r,
        )
        self.search_latency = Histogram(
            "leakwatch_search_latency_seconds",
            "Latency of one /v1/events/search call.",
            buckets=SEARCH_LATENCY_BUCKETS_S,
            registry=r,
        )
        self.cycles = Counter(
            "leakwatch_cycles", "Check cycles, by how they ended.", ["status"], registry=r
        )
        self.cycle_duration = Histogram(
            "leakwatch_cycle_duration_seconds",
            "Wall time of one check cycle.",
            buckets=CYCLE_DURATION_BUCKETS_S,
            registry=r,
        )
        self.verdicts = Counter(
            "leakwatch_verdicts",
            "Verdicts recorded by check cycles (first checks and re-checks), by outcome.",
            ["outcome"],
            registry=r,
        )
        self.last_successful_cycle = Gauge(
            "leakwatch_last_successful_cycle_timestamp_seconds",
            "When the last check cycle that finished without error ended (Unix time).",
            registry=r,
        )
        self.leader = Gauge(
            "leakwatch_leader", "1 while this process is the leader running the jobs.", registry=r
        )
        # So alerting rules can say "N cycles behind" whatever [checks] every is.
        self.check_interval = Gauge(
            "leakwatch_check_interval_seconds",
            "The configured [checks] every: how often the leader starts a check cycle.",
            registry=r,
        )
        self.job_failures = Counter(
            "leakwatch_job_failures", "Scheduled jobs that raised, by job.", ["job"], registry=r
        )
        self.build = Info("leakwatch_build", "The leakwatch version running.", registry=r)
        self.build.info({"version": __version__})
        for outcome in Outcome:
            self.verdicts.labels(outcome=outcome.value)
        self._snapshot = StoreSnapshot()
        self._snapshot_lock = threading.Lock()
        r.register(_StoreCollector(self))

    @property
    def snapshot(self) -> StoreSnapshot:
        with self._snapshot_lock:
            return self._snapshot

    def set_snapshot(self, snapshot: StoreSnapshot) -> None:
        with self._snapshot_lock:
            self._snapshot = snapshot

    def observe_cycle(self, summary: CycleSummary) -> None:
        """Count one finished (or failed) cycle."""
        self.cycles.labels(status=summary.status).inc()
        if summary.finished_at is not None:
            elapsed_s = (summary.finished_at - summary.started_at).total_seconds()
            self.cycle_duration.observe(max(elapsed_s, 0.0))
            if summary.status == "finished":
                self.last_successful_cycle.set(summary.finished_at.timestamp())
        for outcome, count in summary.verdicts.items():
            self.verdicts.labels(outcome=str(outcome)).inc(count)

    def observer(self) -> "PrometheusSearchObserver":
        return PrometheusSearchObserver(self)


# A failure reason carries Metronome's (or a proxy's) own words; as a label it would make
# a new time series per message. The label is its kind; the words go to the log.
REASON_BUCKETS = (
    "timeout",
    "connection_error",
    "rate_limited",
    "malformed",
    "auth",
    "http_4xx",
    "http_5xx",
    "other",
)
_HTTP_CODE = re.compile(r"(?:http )?(\d{3})\b")


def reason_bucket(reason: str) -> str:
    """The kind of a search failure reason, one of `REASON_BUCKETS` (bounded cardinality)."""
    text = reason.lower()
    if text.startswith("timed out") or text.startswith("timeout"):
        return "timeout"
    if text.startswith("connection"):
        return "connection_error"
    if text.startswith("rate limited"):
        return "rate_limited"
    if text.startswith("malformed"):
        return "malformed"
    code = _HTTP_CODE.match(text)
    if code is not None:
        status = int(code.group(1))
        if status in (401, 403):
            return "auth"
        if status == 429:
            return "rate_limited"
        return "http_5xx" if status >= 500 else "http_4xx"
    return "other"


class PrometheusSearchObserver:
    """The search client's `SearchObserver`, counting into `DaemonMetrics`."""

    def __init__(self, metrics: DaemonMetrics) -> None:
        self._metrics = metrics

    def on_call(self, status: str, latency_s: float) -> None:
        self._metrics.search_calls.labels(status=status).inc()
        self._metrics.search_latency.observe(latency_s)

    def on_retry(self, reason: str) -> None:
        self._metrics.search_retries.labels(reason=reason_bucket(reason)).inc()

    def on_rate_limited(self, wait_s: float) -> None:
        self._metrics.search_rate_limited.inc()

    def on_failed(self, reason: str, id_count: int) -> None:
        self._metrics.search_failed_ids.labels(reason=reason_bucket(reason)).inc(id_count)


def metric_samples(registry: CollectorRegistry) -> Iterator[tuple[str, dict[str, str], float]]:
    """Every sample a scrape would show, as (name, labels, value); for tests and debugging."""
    for family in registry.collect():
        for sample in family.samples:
            yield sample.name, dict(sample.labels), float(sample.value)


def sample_value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    """One sample's value, or None when it is not exported."""
    for sample_name, sample_labels, value in metric_samples(registry):
        if sample_name == name and sample_labels == labels:
            return value
    return None


__all__ = [
    "DaemonMetrics",
    "PrometheusSearchObserver",
    "StoreSnapshot",
    "metric_samples",
    "read_store_snapshot",
    "sample_value",
]
