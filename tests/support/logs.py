"""Source logs for tests: JSON lines with known transaction ids and times, written to disk.

`write_log` writes a log of `event_line`s; `source` builds a JSONL source over it;
`txn_index` reads back which line an id came from.
"""

import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

from leakwatch.sources import JsonlSourceSpec, make_source
from leakwatch.sources.jsonl import JsonlSource

NOW = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)


SETTLE = timedelta(minutes=10)


MAX_AGE = timedelta(days=10)


def event_line(index: int, ts: datetime, *, event_type: str = "api", pad: int = 0) -> bytes:
    document = {
        "transaction_id": f"t{index:06d}",
        "customer_id": f"c{index % 7}",
        "event_type": event_type,
        "timestamp": ts.isoformat().replace("+00:00", "Z"),
        "properties": {"quantity": 2, "pad": "x" * pad},
    }
    return json.dumps(document).encode() + b"\n"


def write_log(
    path: Path, count: int, *, start: datetime, step: timedelta, seed: int = 1
) -> list[bytes]:
    """Write `count` time-ordered lines of widely varying length; return them."""
    rng = random.Random(seed)
    lines = [
        event_line(
            i, start + i * step, event_type=rng.choice(["api", "gpu"]), pad=rng.randint(0, 400)
        )
        for i in range(count)
    ]
    path.write_bytes(b"".join(lines))
    return lines


def source(path: Path | str, state_dir: Path, **kwargs: object) -> JsonlSource:
    spec = JsonlSourceSpec(
        name="gateway",
        path=str(path),
        settle_delay=SETTLE,
        max_age=MAX_AGE,
        **kwargs,  # type: ignore[arg-type]
    )
    built = make_source(spec, state_dir=state_dir)
    assert isinstance(built, JsonlSource)
    return built


def txn_index(transaction_id: str) -> int:
    return int(transaction_id[1:])
