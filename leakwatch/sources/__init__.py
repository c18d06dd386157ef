"""Sources: reading the company's own usage log (JSONL files or a SQL table).

Does I/O. `make_source` builds a source from a plain spec (wiring.py calls it for every
configured source); `sample_source` draws once from a built source, as `leakwatch sample`
does.
"""

from leakwatch.sources.base import (
    BadLineReason,
    FileCheckpoint,
    ProgressCallback,
    SampleResult,
    ScanResult,
    Source,
)
from leakwatch.sources.factory import make_source, sample_source
from leakwatch.sources.specs import JsonlSourceSpec, SourceSpec, SqlSourceSpec

__all__ = [
    "BadLineReason",
    "FileCheckpoint",
    "JsonlSourceSpec",
    "ProgressCallback",
    "SampleResult",
    "ScanResult",
    "Source",
    "SourceSpec",
    "SqlSourceSpec",
    "make_source",
    "sample_source",
]
