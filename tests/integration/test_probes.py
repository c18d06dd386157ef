"""Follow-up probes through the real check cycle: source → simulator → store → alerts.

A customer whose events are all unmatched (an alias Metronome does not know) has 1% of
the traffic. One leaky sample of it puts its per-customer test above zero; the next
cycle probes it — draws within that customer only — and the alert fires on what they
find. Without probes the main draw meets it about once every two cycles, so the alert
waits. Probes are recorded with weight 0 under their own stratum: the overall rate
and the all-traffic rule never see them.
"""

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlmodel import col, select

from leakwatch.clock import FakeClock
from leakwatch.core.alerting import AlertStatus
from leakwatch.core.events import Outcome
from leakwatch.core.sampling import probe_stratum
from leakwatch.pipeline.alert import evaluate_alerts
from leakwatch.simulator.scenario import UNKNOWN_ALIAS, LeakMix, build_scenario
from leakwatch.store.db import SessionFactory, session_factory, transaction
from leakwatch.store.models import SampledEvent
from leakwatch.store.queries import outcome_batches, outcome_counts
from leakwatch.wiring import alert_rule
from tests.support.alerts import add_samples
from tests.support.cycle import World, build_world

START = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
ONLY_AN_UNKNOWN_ALIAS = LeakMix(
    dropped=0.0,
    unknown_alias=0.01,
    unmetered_type=0.0,
    collisions=0.0,
    changed_in_flight=0.0,
    resends=0.0,
)


def cycle_and_alerts(world: World) -> list[tuple[str, AlertStatus]]:
    """One check cycle, then the alerts, as the daemon runs them."""
    with world.search_client() as search:
        world.cycle(search).run()
    world.clock.advance(30)  # the lookups took their time
    rules = [alert_rule(r) for r in world.settings.alerts]
    results = evaluate_alerts(sessions_of(world), rules, world.clock.now(), deliver=False)
    return [(r.scope, r.status) for r in results if r.status is not AlertStatus.INACTIVE]


def sessions_of(world: World) -> SessionFactory:
    return session_factory(world.engine)


def probe_world(db_url: str, tmp_path: Path, probe_share: float) -> Iterator[World]:
    # Six hours of traffic up to the settle delay; the last three cycles' worth is what
    # a probe reads (`PROBE_LOOKBACK_CYCLES` × every).
    scenario = build_scenario(
        now=START,
        events=6000,
        oldest=timedelta(hours=6),
        newest=timedelta(minutes=11),
        mix=ONLY_AN_UNKNOWN_ALIAS,
        seed=5,
    )
    yield from build_world(
        db_url,
        tmp_path,
        strings=False,
        scenario=scenario,
        sample_size=60,
        checks={"every": "1h", "probe_share": probe_share, "probe_per_group": 15},
        alerts=[{"name": "leak rate by customer", "threshold": 0.01, "by": "customer_id"}],
    )


@pytest.fixture
def probing(db_url: str, tmp_path: Path) -> Iterator[World]:
    yield from probe_world(db_url, tmp_path, probe_share=0.25)


@pytest.fixture
def not_probing(db_url: str, tmp_path: Path) -> Iterator[World]:
    yield from probe_world(db_url, tmp_path, probe_share=0.0)


def one_leaky_sample_of_the_unknown_alias(world: World) -> None:
    """What an earlier cycle's main draw found: its test is now above zero."""
    add_samples(
        sessions_of(world),
        world.clock,
        leaks=1,
        matched=0,
        outcome=Outcome.UNMATCHED_CUSTOMER,
        customer_id=UNKNOWN_ALIAS,
    )


def test_a_customer_whose_evidence_rose_is_probed_and_alerts_next_cycle(
    probing: World,
) -> None:
    one_leaky_sample_of_the_unknown_alias(probing)
    firing = cycle_and_alerts(probing)
    assert firing == [(f"customer_id={UNKNOWN_ALIAS}", AlertStatus.FIRING)]
    with transaction(sessions_of(probing)) as session:
        probes = list(
            session.exec(
                select(SampledEvent).where(col(SampledEvent.stratum) == "probe:customer_id")
            ).all()
        )
        overall = outcome_counts(
            session, since=START - timedelta(days=1), until=probing.clock.now()
        )[0]
    assert len(probes) == 15
    assert {p.customer_id for p in probes} == {UNKNOWN_ALIAS}
    assert {p.outcome for p in probes} == {Outcome.UNMATCHED_CUSTOMER.value}
    assert {p.weight for p in probes} == {0.0}
    # The overall rate is the main draw's alone: the probes' 15 leaks weigh nothing.
    estimate = overall.rate({Outcome.UNMATCHED_CUSTOMER})
    assert estimate is not None and estimate.rate < 0.1
    # The main draw gave up the probes' share of the sample size.
    with transaction(sessions_of(probing)) as session:
        drawn = session.exec(
            select(SampledEvent).where(
                col(SampledEvent.weight) > 0.0, col(SampledEvent.run_id).is_not(None)
            )
        ).all()
    assert len(drawn) == 60 - 15


def test_without_probes_the_same_customer_is_not_alerted_yet(not_probing: World) -> None:
    one_leaky_sample_of_the_unknown_alias(not_probing)
    assert cycle_and_alerts(not_probing) == []
    with transaction(sessions_of(not_probing)) as session:
        stratum = session.exec(select(col(SampledEvent.stratum)).distinct()).all()
    assert "probe:customer_id" not in stratum


@pytest.mark.parametrize("by", ["event_type", "customer_id"])
def test_a_groups_probes_count_for_its_own_test_and_weigh_nothing_elsewhere(
    sessions: SessionFactory, clock: FakeClock, by: str
) -> None:
    add_samples(sessions, clock, leaks=1, matched=9, event_type="gpu_seconds")
    with transaction(sessions) as session:
        rows = session.exec(select(SampledEvent)).all()
        for row in rows[:4]:  # four of them were probes of their group
            row.weight, row.stratum = 0.0, probe_stratum(by)
            session.add(row)
    with transaction(sessions) as session:
        until = clock.now() + timedelta(seconds=1)
        since = until - timedelta(hours=1)
        [batch] = outcome_batches(
            session, outcomes={Outcome.MISSING}, since=since, until=until, by=by
        )[rows[0].event_type if by == "event_type" else rows[0].customer_id]
        [overall] = outcome_batches(session, outcomes={Outcome.MISSING}, since=since, until=until)[
            None
        ]
    assert (batch.decided, batch.probe_decided, batch.probe_leaks) == (10, 4, 1)
    assert batch.weighted_decided == overall.weighted_decided == 6.0
    assert overall.probe_decided == 0  # the all-traffic rule never counts a probe
