"""Build a source from its spec, and draw one sample: what `leakwatch sample` calls.

Does I/O through the sources it builds.
"""

import random
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from leakwatch.sources.base import ProgressCallback, SampleResult, Source
from leakwatch.sources.jsonl import JsonlSource
from leakwatch.sources.specs import (
    JsonlSourceSpec,
    ParquetSourceSpec,
    SourceSpec,
    SqlSourceSpec,
)

if TYPE_CHECKING:
    from leakwatch.sources.parquet import ParquetSource
    from leakwatch.sources.sql import SqlSource


def make_source(spec: SourceSpec, *, state_dir: Path) -> "JsonlSource | SqlSource | ParquetSource":
    """Build the source a spec describes; `state_dir` holds `.gz` sidecar indexes."""
    if isinstance(spec, JsonlSourceSpec):
        return JsonlSource(spec, state_dir=state_dir)
    if isinstance(spec, ParquetSourceSpec):
        from leakwatch.sources.parquet import ParquetSource

        return ParquetSource(spec)
    if isinstance(spec, SqlSourceSpec):
        from leakwatch.sources.sql import SqlSource

        return SqlSource(spec)
    raise TypeError(f"unknown source spec: {type(spec).__name__}")


def sample_source(
    source: Source,
    n: int | None = None,
    *,
    now: datetime,
    seed: int | None = None,
    progress: ProgressCallback | None = None,
) -> SampleResult:
    """Draw one sample as configured: `n` (default the spec's sample size), its strata.

    The seed is `seed`, else the spec's, else fresh; pass one to reproduce a draw. The
    source is closed afterwards.
    """
    spec = source.spec
    chosen_seed = seed if seed is not None else spec.seed
    rng = random.Random(chosen_seed)
    try:
        return source.sample(
            spec.sample_size if n is None else n,
            now=now,
            rng=rng,
            stratify_by=spec.stratify_by,
            floor=spec.floor,
            progress=progress,
        )
    finally:
        source.close()
