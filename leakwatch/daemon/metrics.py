"""Prometheus metrics for the daemon, on a registry of its own. In-memory; reads the store.

Counters and the latency histogram are fed as things happen (the search client's
observer, each finished cycle). Figures that live in the store (recent outcomes and
leak rate per source, outbox backlog, bad lines) are read by a few aggregate queries
after each cycle and each outbox pass, and served from that snapshot: a scrape never
touches the database.
"""

import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlmodel import Session, col

from leakwatch import __version__
from leakwatch.core.events import DECIDED_OUTCOMES, LEAKING_OUTCOMES, Outcome
from leakwatch.pipeline.check import CycleSummary
from leakwatch.store.models import BadLineCount, Notification
from leakwatch.store.queries import outcome_counts

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
    outbox: dict[str, int] = field(default_factory=dict)
    # (source, reason) -> bad lines ever counted
    bad_lines: dict[tuple[str, str], int] = field(default_factory=dict)


def read_store_snapshot(session: Session, *, now: datetime) -> StoreSnapshot:
    """Run the few aggregate queries behind the store-backed metrics."""
    samples: dict[tuple[str, str], int] = {}
    leak_rate: dict[str, float] = {}
    for group in outcome_counts(session, since=now - RECENT_WINDOW, until=now, by="source"):
        if group.group is None:
            continue
        for outcome, count in group.counts.items():
            samples[(group.group, outcome.value)] = count
        decided = group.weight(DECIDED_OUTCOMES)
        if decided > 0:
            leak_rate[group.group] = group.weight(LEAKING_OUTCOMES) / decided
    outbox = {
        str(status): int(count)
        for status, count in session.execute(
            select(col(Notification.status), func.count())
            .where(col(Notification.status) != "sent")
            .group_by(col(Notification.status))
        )
    }
    bad_lines = {
        (str(source), str(reason)): int(total or 0)
        for source, reason, total in session.execute(
            select(
                col(BadLineCount.source), col(BadLineCount.reason), func.sum(BadLineCount.count)
            ).group_by(col(BadLineCount.source), col(BadLineCount.reason))
        )
    }
    return StoreSnapshot(
        taken_at=now, samples=samples, leak_rate=leak_rate, outbox=outbox, bad_lines=bad_lines
    )


class _StoreCollector(Collector):
    def __init__(self, metrics: "DaemonMetrics") -> None:
        self._metrics = metrics

    def collect(self) -> Iterable[Metric]:
        snapshot = self._metrics.snapshot
        samples = GaugeMetricFamily(
            "leakwatch_samples",
            "Events sampled in the last 24 h, by source and current outcome.",
            labels=["source", "outcome"],
        )
        for (source, outcome), count in sorted(snapshot.samples.items()):
            samples.add_metric([source, outcome], count)
        yield samples
        rate = GaugeMetricFamily(
            "leakwatch_leak_rate",
            "Weighted leak rate among decided samples of the last 24 h, by source.",
            labels=["source"],
        )
        for source, value in sorted(snapshot.leak_rate.items()):
            rate.add_metric([source], value)
        yield rate
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


class PrometheusSearchObserver:
    """The search client's `SearchObserver`, counting into `DaemonMetrics`."""

    def __init__(self, metrics: DaemonMetrics) -> None:
        self._metrics = metrics

    def on_call(self, status: str, latency_s: float) -> None:
        self._metrics.search_calls.labels(status=status).inc()
        self._metrics.search_latency.observe(latency_s)

    def on_retry(self, reason: str) -> None:
        self._metrics.search_retries.labels(reason=reason).inc()

    def on_rate_limited(self, wait_s: float) -> None:
        self._metrics.search_rate_limited.inc()

    def on_failed(self, reason: str, id_count: int) -> None:
        self._metrics.search_failed_ids.labels(reason=reason).inc(id_count)


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
