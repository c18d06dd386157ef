"""A usage history with known leaks: what the demo, the end-to-end tests and the
benchmarks check leakwatch against. Pure generation (seeded) plus one I/O helper that
sends the history to a Metronome (the simulator) the way a leaky pipeline would.

Every event in the log carries its ground truth: the outcome an honest checker must
give it. The leaks injected are the ones DESIGN.md names: dropped events, an unknown
customer alias, an event type no billable metric matches, a transaction-id
collision, a payload changed in flight, and harmless resends (not leaks).
"""

import json
import random
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from leakwatch.core.events import Outcome, SourceEvent, format_timestamp

CUSTOMER_ALIASES = ("acme", "globex", "initech", "umbrella", "billing@acme.example")
UNKNOWN_ALIAS = "hooli"
UNMETERED_TYPE = "storage_gb"


@dataclass(frozen=True, slots=True)
class LeakMix:
    """Shares of the log that each leak gets (of events, roughly)."""

    dropped: float = 0.02
    unknown_alias: float = 0.015
    unmetered_type: float = 0.01
    collisions: float = 0.005
    changed_in_flight: float = 0.005
    resends: float = 0.02


@dataclass(frozen=True, slots=True)
class ScenarioEvent:
    event: SourceEvent
    truth: Outcome
    # What the pipeline actually sent for this log line (None: sent nothing extra).
    sent: tuple[SourceEvent, ...]
    injected: str


@dataclass
class Scenario:
    """A source log (in order), what was sent to Metronome, and the truth."""

    events: list[ScenarioEvent] = field(default_factory=list)
    dropped_ids: set[str] = field(default_factory=set)

    def truth_by_identity(self) -> dict[tuple[str, str], Outcome]:
        return {(e.event.transaction_id, e.event.payload_hash): e.truth for e in self.events}

    def injected_counts(self) -> Counter[str]:
        return Counter(e.injected for e in self.events)

    def truth_counts(self) -> Counter[Outcome]:
        unique = {(e.event.transaction_id, e.event.payload_hash): e.truth for e in self.events}
        return Counter(unique.values())

    def sent_in_order(self) -> list[SourceEvent]:
        sent: list[SourceEvent] = []
        for event in self.events:
            sent.extend(event.sent)
        return sent

    def records(self, *, epoch_ms: bool = False) -> list[dict[str, Any]]:
        """The log's events in ingest shape, in time order; times as epoch ms if asked."""
        records = [e.event.to_ingest_json() for e in self.events]
        if epoch_ms:
            for record, event in zip(records, self.events, strict=True):
                record["timestamp"] = round(event.event.timestamp.timestamp() * 1000)
        return records

    def log_bytes(self, *, epoch_ms: bool = False) -> bytes:
        """The source log as JSON lines in time order."""
        lines = [json.dumps(r, separators=(",", ":")) for r in self.records(epoch_ms=epoch_ms)]
        return ("\n".join(lines) + "\n").encode("utf-8")

    def write_log(self, path: Path, *, epoch_ms: bool = False) -> int:
        """Write the source log as JSON lines in time order; return bytes written."""
        data = self.log_bytes(epoch_ms=epoch_ms)
        path.write_bytes(data)
        return len(data)


def _properties(event_type: str, rng: random.Random) -> dict[str, Any]:
    if event_type == "api_request":
        return {
            "endpoint": rng.choice(["/v1/users", "/v1/orders", "/v1/search"]),
            "user_id": f"u{rng.randrange(500)}",
            "status": rng.choice([200, 200, 200, 201, 404]),
        }
    if event_type == "gpu_seconds":
        return {"gpu": rng.choice(["a100", "h100"]), "seconds": round(rng.uniform(1, 600), 2)}
    if event_type == "tokens":
        return {"model": rng.choice(["small", "large"]), "count": rng.randrange(10, 5000)}
    return {"gb": round(rng.uniform(0.1, 50), 3)}


def build_scenario(
    *,
    now: datetime,
    events: int = 3000,
    oldest: timedelta = timedelta(days=3),
    newest: timedelta = timedelta(hours=3),
    mix: LeakMix | None = None,
    seed: int = 7,
) -> Scenario:
    """Generate `events` log lines between now-oldest and now-newest with known leaks."""
    mix = mix or LeakMix()
    rng = random.Random(seed)
    span_s = (oldest - newest).total_seconds()
    stamps = sorted(
        now - oldest + timedelta(seconds=round(rng.uniform(0, span_s), 3)) for _ in range(events)
    )
    scenario = Scenario()
    pending_collision: SourceEvent | None = None
    for index, timestamp in enumerate(stamps):
        event_type = rng.choices(
            ["api_request", "gpu_seconds", "tokens", UNMETERED_TYPE], weights=[60, 20, 19, 0]
        )[0]
        customer = rng.choice(CUSTOMER_ALIASES)
        roll = rng.random()
        injected = "clean"
        threshold = 0.0
        for name, share in (
            ("dropped", mix.dropped),
            ("unknown_alias", mix.unknown_alias),
            ("unmetered_type", mix.unmetered_type),
            ("collision", mix.collisions),
            ("changed_in_flight", mix.changed_in_flight),
            ("resend", mix.resends),
        ):
            threshold += share
            if roll < threshold:
                injected = name
                break
        if injected == "unknown_alias":
            customer = UNKNOWN_ALIAS
        if injected == "unmetered_type":
            event_type = UNMETERED_TYPE
        event = SourceEvent(
            transaction_id=f"txn-{seed}-{index:07d}",
            customer_id=customer,
            event_type=event_type,
            timestamp=timestamp,
            properties=_properties(event_type, rng),
        )
        if injected == "collision" and pending_collision is None:
            # Remember this event; the next one will reuse its transaction id.
            pending_collision = event
            scenario.events.append(ScenarioEvent(event, Outcome.MATCHED, (event,), "clean"))
            continue
        if pending_collision is not None and injected == "clean":
            # A different event under an id already used: Metronome keeps the first.
            event = replace(event, transaction_id=pending_collision.transaction_id)
            pending_collision = None
            scenario.events.append(ScenarioEvent(event, Outcome.DUPLICATE, (event,), "collision"))
            continue
        truth = {
            "clean": Outcome.MATCHED,
            "dropped": Outcome.MISSING,
            "unknown_alias": Outcome.UNMATCHED_CUSTOMER,
            "unmetered_type": Outcome.UNMATCHED_METRIC,
            "changed_in_flight": Outcome.MISMATCH,
            "resend": Outcome.MATCHED,
            "collision": Outcome.MATCHED,
        }[injected]
        sent: tuple[SourceEvent, ...] = (event,)
        if injected == "dropped":
            scenario.dropped_ids.add(event.transaction_id)
        elif injected == "changed_in_flight":
            changed = dict(event.properties)
            changed["pipeline_version"] = "2"
            sent = (replace(event, properties=changed),)
        elif injected == "resend":
            sent = (event, event)
        scenario.events.append(ScenarioEvent(event, truth, sent, injected))
        if injected == "resend":
            # The log records the resend too: same line, same identity.
            scenario.events.append(ScenarioEvent(event, truth, (), "resend"))
    return scenario


def ingest_scenario(scenario: Scenario, ingest: Any) -> int:
    """Send what the pipeline sent, through `ingest(events)` (e.g. SearchClient.ingest)."""
    sent = scenario.sent_in_order()
    ingest(sent)
    return len(sent)


def jsonl(events: Iterable[SourceEvent]) -> str:
    return "".join(json.dumps(e.to_ingest_json()) + "\n" for e in events)


__all__ = [
    "LeakMix",
    "Scenario",
    "ScenarioEvent",
    "build_scenario",
    "format_timestamp",
    "ingest_scenario",
]
