"""Turn one raw log line into a `SourceEvent`, or say why it cannot be one.

Pure: bytes in, event or reason out. Field paths are dotted (`payload.txn`), so a log
that nests or renames Metronome's ingest fields is read without a transform step.
"""

import itertools
import json
import operator
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any

import msgspec

from leakwatch.core.events import SourceEvent
from leakwatch.core.sampling import STRATUM_SEPARATOR
from leakwatch.core.timestamps import DEFAULT_FORMAT, TimestampFormat, read_timestamp
from leakwatch.sources.base import BadLineReason


@dataclass(frozen=True, slots=True)
class FieldPaths:
    """The dotted paths of each logical field, split once."""

    transaction_id: tuple[str, ...]
    customer_id: tuple[str, ...]
    event_type: tuple[str, ...]
    timestamp: tuple[str, ...]
    properties: tuple[str, ...]
    timestamp_format: TimestampFormat = DEFAULT_FORMAT

    @classmethod
    def from_mapping(
        cls, fields: Mapping[str, str], timestamp_format: TimestampFormat = DEFAULT_FORMAT
    ) -> "FieldPaths":
        def split(name: str) -> tuple[str, ...]:
            path = tuple(part for part in fields[name].split(".") if part)
            if not path:
                raise ValueError(f"empty field path for {name}")
            return path

        return cls(
            transaction_id=split("transaction_id"),
            customer_id=split("customer_id"),
            event_type=split("event_type"),
            timestamp=split("timestamp"),
            properties=split("properties"),
            timestamp_format=timestamp_format,
        )


_MISSING = object()


def _dig(document: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(document, dict):
            return _MISSING
        document = document.get(key, _MISSING)
        if document is _MISSING:
            return _MISSING
    return document


def _as_id(value: Any) -> str | None:
    # Integer ids are common in SQL-fed logs; Metronome takes them as strings.
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str) and value:
        return value
    return None


def _decode(raw: bytes) -> Any | BadLineReason:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return BadLineReason.NOT_UTF8
    try:
        document = json.loads(text)
    except (ValueError, RecursionError):
        # RecursionError: nesting deeper than the parser's stack (`[[[[…`), still not an event.
        return BadLineReason.NOT_JSON
    if not isinstance(document, dict):
        return BadLineReason.NOT_JSON
    return document


def parse_line(raw: bytes, paths: FieldPaths, max_line_bytes: int) -> SourceEvent | BadLineReason:
    """Parse a line (with or without its newline) into an event, or the reason it is bad."""
    if len(raw) > max_line_bytes:
        return BadLineReason.TOO_LONG
    document = _decode(raw)
    if isinstance(document, BadLineReason):
        return document
    transaction_id = _as_id(_dig(document, paths.transaction_id))
    if transaction_id is None:
        return BadLineReason.NO_TRANSACTION_ID
    timestamp = _timestamp_of(document, paths)
    if timestamp is None:
        return BadLineReason.BAD_TIMESTAMP
    customer_id = _as_id(_dig(document, paths.customer_id))
    event_type = _dig(document, paths.event_type)
    if customer_id is None or not isinstance(event_type, str) or not event_type:
        return BadLineReason.MISSING_FIELD
    properties = _dig(document, paths.properties)
    if properties is _MISSING or properties is None:
        properties = {}
    if not isinstance(properties, dict):
        return BadLineReason.MISSING_FIELD
    return SourceEvent(
        transaction_id=transaction_id,
        customer_id=customer_id,
        event_type=event_type,
        timestamp=timestamp,
        properties=properties,
    )


def _timestamp_of(document: Any, paths: FieldPaths) -> datetime | None:
    return read_timestamp(_dig(document, paths.timestamp), paths.timestamp_format)


def line_timestamp(raw: bytes, paths: FieldPaths, max_line_bytes: int) -> datetime | None:
    """Read only the timestamp of a line (None when the line is bad); for binary search."""
    if len(raw) > max_line_bytes:
        return None
    document = _decode(raw)
    if isinstance(document, BadLineReason):
        return None
    return _timestamp_of(document, paths)


# -- the tail's fast path -----------------------------------------------------------------
#
# The tail reads every line but needs only a few fields of each. msgspec decodes a whole
# block of lines into small structs holding just those fields (skipping the rest in C),
# about 4× faster than `json.loads` of every line. It is only a fast path: any line it
# cannot take as a valid event (a wrong type, a missing field, a naive timestamp, a
# decode error) sends its block back through `parse_line`, which decides bad lines
# exactly as the sampler does.

_NON_EMPTY = Annotated[str, msgspec.Meta(min_length=1)]
_ID_TYPE: Any = _NON_EMPTY | int
_LEAF_TYPES: Mapping[str, Any] = {
    "transaction_id": _ID_TYPE,
    "customer_id": _ID_TYPE,
    "event_type": _NON_EMPTY,
    "timestamp": datetime,
}


class _Absent:
    """Stands for a properties object that is missing or null (counted as `{}`)."""

    def __getattr__(self, name: str) -> None:
        return None


_ABSENT = _Absent()


@dataclass(frozen=True, slots=True)
class TailDecoder:
    """Decode blocks of lines into the few fields the tail counts (see above).

    `decode_block` returns None when any line needs the exact, slow path.
    """

    decoder: "msgspec.json.Decoder[Any]"
    event_type: Callable[[Any], str]
    customer_id: Callable[[Any], Any]
    timestamp: Callable[[Any], datetime]
    properties: Callable[[Any], Any]
    # property name → attribute on the decoded properties struct
    property_attrs: Mapping[str, str]

    def strata(self, decoded: list[Any], fields: tuple[str, ...]) -> list[str]:
        """Each decoded line's stratum, named as `core.sampling.stratum_of` names it."""
        columns = [
            list(
                map(
                    str, map(self.event_type if name == "event_type" else self.customer_id, decoded)
                )
            )
            for name in fields
        ]
        if len(columns) == 1:
            return columns[0]
        return list(map(STRATUM_SEPARATOR.join, zip(*columns, strict=True)))

    def decode_block(self, data: bytes, lo: int = 0, hi: int | None = None) -> list[Any] | None:
        """Decode the complete lines `data[lo:hi]` (in place); None when a line is not a
        plain valid event."""
        end = len(data) if hi is None else hi
        if not data.isascii():  # the whole buffer: ASCII throughout is the common case
            try:
                data[lo:end].decode("utf-8")
            except UnicodeDecodeError:
                return None
        try:
            return self.decoder.decode_lines(memoryview(data)[lo:end])
        except (msgspec.DecodeError, RecursionError):
            return None


def tail_decoder(paths: FieldPaths, property_names: Iterable[str]) -> TailDecoder | None:
    """Build the fast decoder for these field paths; None when the paths overlap oddly.

    `property_names` are the properties the tail sums (per-unit quantities).
    """
    root = _Node()
    leaves = {
        "transaction_id": paths.transaction_id,
        "customer_id": paths.customer_id,
        "event_type": paths.event_type,
        "timestamp": paths.timestamp,
    }
    for name, path in leaves.items():
        node = root.walk(path)
        if node is None or node.children or node.leaf or node.properties:
            return None
        node.leaf = name
    properties_node = root.walk(paths.properties)
    if properties_node is None or properties_node.leaf:
        return None
    properties_node.properties = True
    property_attrs = {prop: f"q{i}" for i, prop in enumerate(sorted(set(property_names)))}
    properties_node.quantities = {attr: prop for prop, attr in property_attrs.items()}
    attr_paths: dict[str, tuple[str, ...]] = {}
    struct = _struct_for(root, (), attr_paths, itertools.count())
    properties_path = attr_paths["properties"]

    def properties(decoded: Any) -> Any:
        value = decoded
        for attr in properties_path:
            value = getattr(value, attr)
            if value is None:
                return _ABSENT
        return value

    return TailDecoder(
        decoder=msgspec.json.Decoder(struct),
        event_type=operator.attrgetter(".".join(attr_paths["event_type"])),
        customer_id=operator.attrgetter(".".join(attr_paths["customer_id"])),
        timestamp=operator.attrgetter(".".join(attr_paths["timestamp"])),
        properties=properties,
        property_attrs=property_attrs,
    )


@dataclass
class _Node:
    """One JSON object level of the fields the tail reads."""

    children: dict[str, "_Node"] = field(default_factory=dict)
    leaf: str | None = None
    properties: bool = False
    # attribute → property name, for the summed quantities
    quantities: dict[str, str] = field(default_factory=dict)

    def walk(self, path: tuple[str, ...]) -> "_Node | None":
        """The node at `path`, created as needed; None when a leaf is in the way."""
        node = self
        for key in path:
            if node.leaf is not None:
                return None
            node = node.children.setdefault(key, _Node())
        return node

    def holds_leaf(self) -> bool:
        return self.leaf is not None or any(c.holds_leaf() for c in self.children.values())


def _struct_for(
    node: _Node,
    prefix: tuple[str, ...],
    attr_paths: dict[str, tuple[str, ...]],
    counter: "itertools.count[int]",
) -> Any:
    """Build the msgspec struct for `node`, recording each field's attribute path."""
    if node.properties:
        attr_paths["properties"] = prefix
    fields: list[tuple[str, Any] | tuple[str, Any, Any]] = []
    rename: dict[str, str] = {}
    for attr, prop in node.quantities.items():
        rename[attr] = prop
        fields.append((attr, Any, None))
    for key, child in node.children.items():
        attr = f"f{next(counter)}"
        rename[attr] = key
        if child.leaf is not None:
            attr_paths[child.leaf] = (*prefix, attr)
            fields.append((attr, _LEAF_TYPES[child.leaf]))
            continue
        struct = _struct_for(child, (*prefix, attr), attr_paths, counter)
        if child.holds_leaf():
            fields.append((attr, struct))
        else:  # only on the way to properties: missing or null reads as `{}`
            fields.append((attr, struct | None, None))
    return msgspec.defstruct(f"TailLine{next(counter)}", fields, rename=rename, kw_only=True)
