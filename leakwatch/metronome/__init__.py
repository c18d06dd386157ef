"""The Metronome edge: the rate-limited search client, its parser and its errors."""

from leakwatch.metronome.client import (
    AdaptiveRate,
    NullSearchObserver,
    SearchClient,
    SearchObserver,
    SearchResult,
    SearchStats,
)
from leakwatch.metronome.errors import (
    IngestRejected,
    MalformedResponse,
    MetronomeError,
    RequestFailed,
    TokenRejected,
)
from leakwatch.metronome.parse import parse_search_body, parse_search_item

__all__ = [
    "AdaptiveRate",
    "IngestRejected",
    "MalformedResponse",
    "MetronomeError",
    "NullSearchObserver",
    "RequestFailed",
    "SearchClient",
    "SearchObserver",
    "SearchResult",
    "SearchStats",
    "TokenRejected",
    "parse_search_body",
    "parse_search_item",
]
