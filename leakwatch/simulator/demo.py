"""`leakwatch demo`: the whole product in one command, with nothing else running.

A simulated Metronome (in-process, real HTTP on loopback), a source log written by a
leaky pipeline with known injected leaks, the embedded SQLite store, a few check
cycles on a fast-forwarded clock, an alert, the weekly report, and a table of what
leakwatch found next to what was injected. Leaves nothing running.
"""

import json
import secrets
import tempfile
import tomllib
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from sqlalchemy import select

from leakwatch.clock import FakeClock, SystemClock
from leakwatch.config import Environment, Settings, settings_from_mapping
from leakwatch.core.events import LEAKING_OUTCOMES, Outcome
from leakwatch.core.formatting import format_percent, format_rate_interval
from leakwatch.core.stats import OutcomeTally
from leakwatch.files import write_private
from leakwatch.metronome.client import SearchClient
from leakwatch.pipeline.runtime import Runtime
from leakwatch.simulator import SimulatorOptions, SimulatorServer, build_demo_state
from leakwatch.simulator.scenario import UNKNOWN_ALIAS, Scenario, build_scenario, ingest_scenario
from leakwatch.store.db import transaction
from leakwatch.store.models import SampledEvent
from leakwatch.views.status import build_status
from leakwatch.views.terminal import print_reconciliation, print_status
from leakwatch.wiring import build_runtime

INJECTED_AS = {
    "dropped": Outcome.MISSING,
    "unknown_alias": Outcome.UNMATCHED_CUSTOMER,
    "unmetered_type": Outcome.UNMATCHED_METRIC,
    "collision": Outcome.DUPLICATE,
    "changed_in_flight": Outcome.MISMATCH,
    "resend": Outcome.MATCHED,
    "clean": Outcome.MATCHED,
}
DESCRIPTIONS = {
    "dropped": "accepted by ingest, never stored",
    "unknown_alias": f"customer alias `{UNKNOWN_ALIAS}` no customer has",
    "unmetered_type": "event type `storage_gb`: no billable metric",
    "collision": "a different event reused a transaction id",
    "changed_in_flight": "the pipeline changed a property after logging",
    "resend": "sent twice, billed once",
    "clean": "sent once, billed",
}


@contextmanager
def _workdir(keep: Path | None) -> Iterator[Path]:
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        yield keep
        return
    with tempfile.TemporaryDirectory(prefix="leakwatch-demo-") as tmp:
        yield Path(tmp)


def demo_config(workdir: Path, log: Path) -> str:
    """The demo's leakwatch.toml: what `--keep DIR` leaves behind, so `leakwatch status -c
    DIR/leakwatch.toml` (or `report`, `outcomes`, `reconcile`) carries on where it stopped.

    The simulator's address and token are not in it: they come from the environment
    while the demo runs, and the simulator is gone when it ends.
    """
    return f"""# Written by `leakwatch demo --keep`: the store and source the demo used.
database_url = {_toml_string(f"sqlite:///{workdir / 'leakwatch.db'}")}
state_dir = {_toml_string(str(workdir / "state"))}

[metronome]
requests_per_second = 10
max_ids_per_request = 100

[[sources]]
name = "gateway"
type = "jsonl"
path = {_toml_string(str(log))}
sample_size = 700
settle_delay = "10m"
max_age = "33d"
expected_metrics = {{ api_request = ["API requests"] }}

[checks]
every = "15m"
missing_grace = "2h"
min_checks_before_missing = 2

[[alerts]]
name = "leak rate"
rate = "leak_rate"
threshold = 0.02
min_samples = 200

[[alerts]]
name = "unknown customers"
rate = "unmatched_customer_rate"
threshold = 0.005
min_samples = 20
by = "customer_id"
severity = "critical"

[health]
source_stale_after = "7d"

[report]
timezone = "UTC"
out_dir = {_toml_string(str(workdir / "reports"))}

[report.prices]
api_request = 0.002
gpu_seconds = {{ per_unit = 0.0004, property = "seconds" }}
tokens = {{ per_unit = 0.00002, property = "count" }}
"""


def _toml_string(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid TOML basic string


def demo_settings(workdir: Path, log: Path, base_url: str, token: str) -> Settings:
    return settings_from_mapping(
        tomllib.loads(demo_config(workdir, log)),
        Environment.model_validate(
            {"METRONOME_BEARER_TOKEN": token, "METRONOME_BASE_URL": base_url}
        ),
        origin="demo",
    )


def run_demo(console: Console, *, keep: Path | None = None, events: int = 4000) -> int:
    """Run the tour; return 0 when leakwatch's findings agree with the injected truth."""
    started = SystemClock().monotonic()
    # The demo fast-forwards: a cycle every 15 minutes takes milliseconds here.
    clock = FakeClock(SystemClock().now())
    token = f"demo-{secrets.token_hex(8)}"
    scenario = build_scenario(now=clock.now(), events=events, seed=7)
    state = build_demo_state(clock=clock, options=SimulatorOptions(properties_as_strings=True))
    state.faults.silent_drop_ids.update(scenario.dropped_ids)
    with _workdir(keep) as workdir, SimulatorServer(state, token=token) as server:
        log = workdir / "usage.jsonl"
        scenario.write_log(log)
        with SearchClient(
            base_url=server.base_url, token=token, clock=clock, requests_per_second=100
        ) as ingester:
            sent = ingest_scenario(scenario, ingester.ingest)
        console.print(
            f"[bold]1. A leaky pipeline[/]: wrote {len(scenario.events):,} events to {log.name} "
            f"and sent {sent:,} to a simulated Metronome at {server.base_url}"
        )
        settings = demo_settings(workdir, log, server.base_url, token)
        runtime = build_runtime(settings, clock=clock)
        try:
            console.print("[bold]2. Check cycles[/] (every 15 minutes, fast-forwarded)")
            for number in range(1, 4):
                summary = runtime.run_cycle()
                console.print(
                    f"   cycle {number}: drew {sum(r.drawn for r in summary.sources.values())}, "
                    f"checked {summary.checked} in {summary.search_requests} search calls: "
                    + ", ".join(f"{v} {k}" for k, v in summary.verdicts.most_common())
                )
                clock.advance(15 * 60)
            for _ in range(2):
                summary = runtime.run_cycle(draw=False)
                if summary.checked:
                    console.print(
                        f"   re-check: {summary.checked} pending events looked up again: "
                        + ", ".join(f"{v} {k}" for k, v in summary.verdicts.most_common())
                    )
                clock.advance(15 * 60)
            agreement_ok = _print_found_vs_injected(console, runtime, scenario)
            console.print("[bold]3. Alerts[/] (Slack is not configured here; they are stored)")
            for result in runtime.evaluate_alerts():
                if result.status.value == "firing":
                    scope = f" [{result.scope}]" if result.scope else ""
                    console.print(
                        f"   FIRING {result.rule_name}{scope}: {result.reason}", markup=False
                    )
            console.print("[bold]4. Status[/] (`leakwatch status`)")
            view = build_status(
                runtime.sessions,
                now=clock.now(),
                window=timedelta(days=1),
                prices=settings.report.prices,
                currency=settings.report.currency,
            )
            print_status(console, view)
            _reconcile(console, runtime, settings)
            _heal(console, runtime, server, clock)
            _report(console, runtime, settings, clock)
        finally:
            runtime.close()
        elapsed = SystemClock().monotonic() - started
        console.print(f"done in {elapsed:.1f}s", markup=False)
        if keep:
            config = workdir / "leakwatch.toml"
            write_private(config, demo_config(workdir, log).encode("utf-8"))
            console.print(
                f"files kept in {workdir}; carry on with `leakwatch status -c {config}`",
                markup=False,
                soft_wrap=True,
            )
    return 0 if agreement_ok else 1


def _print_found_vs_injected(console: Console, runtime: Runtime, scenario: Scenario) -> bool:
    truth = scenario.truth_by_identity()
    injected_kind = {
        (e.event.transaction_id, e.event.payload_hash): e.injected for e in scenario.events
    }
    with transaction(runtime.sessions) as session:
        rows = list(session.execute(select(SampledEvent)).scalars())
    per_kind: dict[str, Counter[str]] = {}
    agree = 0
    for row in rows:
        key = (row.transaction_id, row.payload_hash)
        kind = injected_kind[key]
        per_kind.setdefault(kind, Counter())[row.outcome] += 1
        agree += int(row.outcome == truth[key].value)
    in_log = Counter(injected_kind.values())
    table = Table(title="found vs injected", title_justify="left")
    for column in ("injected", "in the log", "sampled", "leakwatch said", "right"):
        table.add_column(
            column, justify="left" if column in ("injected", "leakwatch said") else "right"
        )
    for kind in (
        "dropped",
        "unknown_alias",
        "unmetered_type",
        "collision",
        "changed_in_flight",
        "resend",
        "clean",
    ):
        found = per_kind.get(kind, Counter())
        expected = INJECTED_AS[kind].value
        said = ", ".join(f"{count} {name}" for name, count in found.most_common()) or "–"
        table.add_row(
            escape(f"{kind} ({DESCRIPTIONS[kind]})"),
            f"{in_log.get(kind, 0):,}",
            f"{sum(found.values()):,}",
            said,
            f"{found.get(expected, 0)}/{sum(found.values())}",
        )
    console.print(table)
    true_leaks = sum(1 for t in truth.values() if t in LEAKING_OUTCOMES)
    true_rate = true_leaks / len(truth)
    tally = OutcomeTally()
    for r in rows:
        tally.add(Outcome(r.outcome), 1, r.weight, r.weight * r.weight)
    console.print(
        f"   true leak rate {format_percent(true_rate)}; estimated from {tally.decided} "
        f"samples: {format_rate_interval(tally.leak_rate())} (95% CI); "
        f"{agree}/{len(rows)} sampled events got their true outcome"
    )
    return agree == len(rows)


def _reconcile(console: Console, runtime: Runtime, settings: Settings) -> None:
    console.print(
        "[bold]5. Totals reconciliation[/] (`leakwatch reconcile`: the exact gap, per "
        "customer, metric and day, from Metronome's /v1/usage)"
    )
    result = runtime.reconcile(days=3)
    print_reconciliation(console, result, currency=settings.report.currency)


def _heal(console: Console, runtime: Runtime, server: SimulatorServer, clock: FakeClock) -> None:
    customer = next(c for c in server.state.customers() if c.name == "Initech")
    server.state.add_alias(customer.id, UNKNOWN_ALIAS)
    clock.advance(6 * 3600)
    summary = runtime.run_cycle(draw=False)
    console.print(
        f"[bold]6. A fix[/]: added the alias `{UNKNOWN_ALIAS}` to {customer.name} in Metronome; "
        f"6h later the re-check found {summary.healed} unmatched-customer event(s) healed"
    )


def _report(console: Console, runtime: Runtime, settings: Settings, clock: FakeClock) -> None:
    from leakwatch.core.formatting import format_instant
    from leakwatch.core.weeks import IsoWeek
    from leakwatch.pipeline.report import build_report, write_report

    # The demo's usage is from the last three days: report the week that holds it.
    week = IsoWeek.containing(clock.now(), ZoneInfo(settings.report.timezone))
    content = build_report(
        runtime.sessions,
        week=str(week),
        now=clock.now(),
        timezone=settings.report.timezone,
        prices=settings.report.prices,
        checks_every=settings.checks.every,
    )
    paths = write_report(content, settings.report.out_dir, mode=settings.report.file_mode)
    console.print(
        f"[bold]7. The weekly report[/] ({content.week}, at {format_instant(clock.now())})"
    )
    console.print(f"   {content.summary}", markup=False)
    console.print(f"   written to {settings.report.out_dir}:", markup=False, soft_wrap=True)
    for path in paths:
        console.print(f"     {path.name}", markup=False, soft_wrap=True)
