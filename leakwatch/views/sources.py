"""`leakwatch sources`: can this source be trusted? Reads the store; writes nothing.

Per source: what it is made of now (files or objects and their bytes, `.gz` seek
indexes, the SQL dialect's sampling — from `sources.inventory`), the sampling window,
the events per day by type the tail counted, bad lines by reason with examples, and
where the tail stands in each file and when it last read.
"""

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from leakwatch.core.events import format_timestamp
from leakwatch.core.sampling import sampling_window
from leakwatch.sources.inventory import SourceInventory
from leakwatch.store.db import SessionFactory, transaction
from leakwatch.store.queries import volume_rows
from leakwatch.store.source_queries import (
    BadLines,
    ReadPosition,
    bad_lines_with_examples,
    read_positions,
    source_state,
)


@dataclass(frozen=True, slots=True)
class SourceWindow:
    """How a source is sampled: events settled for `settle_delay`, at most `max_age` old."""

    name: str
    settle_delay: timedelta
    max_age: timedelta


def bad_line_rate(bad: int, usable: int) -> float | None:
    """Bad lines as a share of all lines read (None when nothing was read)."""
    total = bad + usable
    return bad / total if total else None


@dataclass
class SourceView:
    inventory: SourceInventory
    window_start: datetime
    window_end: datetime
    # day → event type → events (the tail's exact counts, UTC days in the window)
    events_per_day: dict[date, dict[str, int]]
    bad_lines: list[BadLines]
    bad_line_rate: float | None
    read_positions: list[ReadPosition]
    last_scan_at: datetime | None
    last_sampled_at: datetime | None

    def to_dict(self) -> dict[str, Any]:
        return _jsonable_dict(
            {
                **asdict(self.inventory),
                "window": {"start": self.window_start, "end": self.window_end},
                "events_per_day": {
                    day.isoformat(): types for day, types in sorted(self.events_per_day.items())
                },
                "bad_lines": [asdict(b) for b in self.bad_lines],
                "bad_line_rate": self.bad_line_rate,
                "read_positions": [asdict(p) for p in self.read_positions],
                "last_scan_at": self.last_scan_at,
                "last_sampled_at": self.last_sampled_at,
            }
        )


@dataclass
class SourcesView:
    now: datetime
    sources: list[SourceView] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"now": format_timestamp(self.now), "sources": [s.to_dict() for s in self.sources]}


def build_sources_view(
    sessions: SessionFactory,
    *,
    now: datetime,
    windows: Iterable[SourceWindow],
    inventories: Mapping[str, SourceInventory],
) -> SourcesView:
    """Join each source's inventory with what the store holds of its reading."""
    view = SourcesView(now=now)
    for spec in windows:
        window = sampling_window(now, spec.settle_delay, spec.max_age)
        first_day, last_day = window.start.date(), window.end.date()
        with transaction(sessions) as session:
            per_day: defaultdict[date, dict[str, int]] = defaultdict(dict)
            for row in volume_rows(session, first_day, last_day):
                if row.source == spec.name:
                    per_day[row.day][row.event_type] = row.events
            bad = bad_lines_with_examples(session, spec.name, first_day, last_day)
            positions = read_positions(session, spec.name)
            state = source_state(session, spec.name)
        usable = sum(sum(types.values()) for types in per_day.values())
        view.sources.append(
            SourceView(
                inventory=inventories[spec.name],
                window_start=window.start,
                window_end=window.end,
                events_per_day=dict(per_day),
                bad_lines=bad,
                bad_line_rate=bad_line_rate(sum(b.count for b in bad), usable),
                read_positions=positions,
                last_scan_at=state.last_scan_at if state else None,
                last_sampled_at=state.last_sampled_at if state else None,
            )
        )
    return view


def _jsonable_dict(value: dict[str, Any]) -> dict[str, Any]:
    return {key: _jsonable(item) for key, item in value.items()}


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, datetime):
        return format_timestamp(value)
    if isinstance(value, date):
        return value.isoformat()
    return value
