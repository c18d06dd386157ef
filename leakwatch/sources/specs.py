"""Plain, frozen descriptions of sources; config parsing builds these.

No I/O. Validation happens at construction so a bad config fails before any file is read.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from types import MappingProxyType
from typing import Any

from leakwatch.core.sampling import parse_stratify_by, validate_window_spec
from leakwatch.core.timestamps import DEFAULT_FORMAT, TimestampFormat

# Metronome's ingest shape: each logical field sits at the top level under its own name.
DEFAULT_FIELDS: Mapping[str, str] = MappingProxyType(
    {
        "transaction_id": "transaction_id",
        "customer_id": "customer_id",
        "event_type": "event_type",
        "timestamp": "timestamp",
        "properties": "properties",
    }
)
LOGICAL_FIELDS = frozenset(DEFAULT_FIELDS)
DEFAULT_MAX_LINE_BYTES = 1 << 20


def _merged_fields(fields: Mapping[str, str]) -> Mapping[str, str]:
    unknown = set(fields) - LOGICAL_FIELDS
    if unknown:
        raise ValueError(f"unknown field mapping keys: {sorted(unknown)}")
    merged = dict(DEFAULT_FIELDS)
    merged.update(fields)
    return MappingProxyType(merged)


@dataclass(frozen=True, slots=True, kw_only=True)
class _DrawnSpec:
    """What every kind of source shares: its name, the fields, the sampling window and
    the draw. Keyword-only, so each kind adds its own required fields after these."""

    name: str
    fields: Mapping[str, str] = field(default_factory=dict)
    settle_delay: timedelta = timedelta(minutes=10)
    max_age: timedelta = timedelta(days=33)
    sample_size: int = 500
    stratify_by: str | None = None
    floor: int = 5
    seed: int | None = None
    # Event type → the numeric property summed into volume counts (per-unit prices).
    quantity_properties: Mapping[str, str] = field(default_factory=dict)
    timestamp_format: TimestampFormat = DEFAULT_FORMAT

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("a source needs a name")
        validate_window_spec(self.settle_delay, self.max_age)
        if self.sample_size < 0:
            raise ValueError("sample_size must not be negative")
        if self.floor < 0:
            raise ValueError("floor must not be negative")
        parse_stratify_by(self.stratify_by)
        self._validate()
        object.__setattr__(self, "fields", _merged_fields(self.fields))

    def _validate(self) -> None:
        """The checks of one kind of source (the shared ones have passed)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class JsonlSourceSpec(_DrawnSpec):
    """A JSONL log: one file, a glob, or a directory of (possibly rotated, .gz) files.

    `fields` maps logical names to dotted paths inside each line (e.g.
    `transaction_id = "payload.txn"`); unnamed fields keep the ingest-shape default.
    `order_slack` is how far out of time order lines may be and still count as a
    time-ordered log (writers flush out of order by seconds, not hours).
    """

    path: str
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES
    order_slack: timedelta = timedelta(minutes=15)
    # fsspec options for object-storage paths (s3://…); credentials come from the
    # environment (AWS_ACCESS_KEY_ID, profiles, …), never from here.
    storage_options: Mapping[str, Any] = field(default_factory=dict)

    def _validate(self) -> None:
        if not self.path:
            raise ValueError(f"source {self.name!r}: a jsonl source needs a path")
        if self.max_line_bytes < 64:
            raise ValueError("max_line_bytes must be at least 64")


@dataclass(frozen=True, slots=True, kw_only=True)
class SqlSourceSpec(_DrawnSpec):
    """A SQL table (or a query used as a table) reachable by a SQLAlchemy URL.

    `fields` maps logical names to column names. `properties` names a JSON column;
    alternatively `property_columns` lists plain columns gathered into properties.
    """

    url: str
    table: str | None = None
    query: str | None = None
    property_columns: tuple[str, ...] = ()

    def _validate(self) -> None:
        if not self.url:
            raise ValueError(f"source {self.name!r}: a sql source needs a url")
        if (self.table is None) == (self.query is None):
            raise ValueError(f"source {self.name!r}: give exactly one of table or query")
        if self.property_columns and "properties" in self.fields:
            raise ValueError("give either a properties column or property_columns, not both")


@dataclass(frozen=True, slots=True, kw_only=True)
class ParquetSourceSpec(_DrawnSpec):
    """Parquet files (local or object storage; a file, a glob or a directory).

    `fields` maps logical names to top-level column names. The properties column may
    hold a JSON string, a struct or a map; the timestamp column a timestamp type, an
    epoch number (`timestamp_format.unit`) or a string.
    """

    path: str
    storage_options: Mapping[str, Any] = field(default_factory=dict)

    def _validate(self) -> None:
        if not self.path:
            raise ValueError(f"source {self.name!r}: a parquet source needs a path")


SourceSpec = JsonlSourceSpec | SqlSourceSpec | ParquetSourceSpec
