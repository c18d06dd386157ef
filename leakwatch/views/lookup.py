"""`leakwatch lookup`: what Metronome holds for some transaction ids, and our verdict.

For an id leakwatch has sampled, the verdict is the classifier's on the recorded
source event. For one it has not, the source event is unknown, so the accepted item
stands in for it: that judges customer and metric matching and duplicates, but cannot
see a payload changed in flight, and "not found" cannot be told from "not yet".
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from leakwatch.core.classify import ClassifyPolicy, classify
from leakwatch.core.events import SearchItem, SourceEvent
from leakwatch.metronome.client import SearchClient
from leakwatch.store.db import SessionFactory, transaction
from leakwatch.store.models import SampledEvent
from leakwatch.store.outcomes import source_event_of
from leakwatch.store.queries import sampled_events_of


@dataclass
class Verdicts:
    source: str | None
    payload_hash: str | None
    outcome: str
    reason: str
    recorded_outcome: str | None = None


@dataclass
class LookupResult:
    transaction_id: str
    items: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    verdicts: list[Verdicts] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "transaction_id": self.transaction_id,
            "items": self.items,
            "error": self.error,
            "verdicts": [v.__dict__ for v in self.verdicts],
        }


def _stand_in(items: Sequence[SearchItem]) -> SourceEvent | None:
    accepted = [i for i in items if not i.is_duplicate] or list(items)
    if not accepted or accepted[0].timestamp is None:
        return None
    item = accepted[0]
    return SourceEvent(
        transaction_id=item.transaction_id,
        customer_id=item.customer_id,
        event_type=item.event_type,
        timestamp=item.timestamp,  # type: ignore[arg-type]
        properties=dict(item.properties),
    )


def look_up(
    transaction_ids: Sequence[str],
    *,
    search: SearchClient,
    sessions: SessionFactory | None,
    policy_for: Callable[[str | None], ClassifyPolicy],
    now: datetime,
) -> list[LookupResult]:
    """Search the ids and judge each one; never raises for a failed lookup (it says so)."""
    recorded: dict[str, list[SampledEvent]] = {}
    if sessions is not None:
        with transaction(sessions) as session:
            for row in sampled_events_of(session, transaction_ids):
                recorded.setdefault(row.transaction_id, []).append(row)
    answer = search.search(transaction_ids)
    results: list[LookupResult] = []
    for txn in dict.fromkeys(transaction_ids):
        result = LookupResult(transaction_id=txn)
        if txn in answer.errors:
            result.error = answer.errors[txn]
        elif txn in answer.not_looked_up:
            result.error = "not looked up (search budget or deadline ran out)"
        else:
            items = answer.answered.get(txn, ())
            result.items = [dict(i.raw) for i in items]
            for row in recorded.get(txn, []):
                policy = policy_for(row.source)
                verdict = classify(
                    source_event_of(row), items, now=now, policy=policy, attempts=row.attempts + 1
                )
                result.verdicts.append(
                    Verdicts(
                        source=row.source,
                        payload_hash=row.payload_hash,
                        outcome=verdict.outcome.value,
                        reason=verdict.reason,
                        recorded_outcome=row.outcome,
                    )
                )
            if not recorded.get(txn):
                stand_in = _stand_in(items)
                if stand_in is None:
                    result.verdicts.append(
                        Verdicts(
                            source=None,
                            payload_hash=None,
                            outcome="not found",
                            reason=(
                                "Metronome holds nothing under this id: missing if the event "
                                "is older than the missing grace period, else pending"
                            ),
                        )
                    )
                else:
                    verdict = classify(stand_in, items, now=now, policy=policy_for(None))
                    result.verdicts.append(
                        Verdicts(
                            source=None,
                            payload_hash=None,
                            outcome=verdict.outcome.value,
                            reason=verdict.reason + " (judged without the source event)",
                        )
                    )
        results.append(result)
    return results
