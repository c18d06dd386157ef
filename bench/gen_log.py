"""Generate a time-ordered JSONL usage log (Metronome ingest shape) for benchmarks and demos.

Writes under a directory you name (bench/out/ or /tmp), never into the repository.
"""

import argparse
import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

EVENT_TYPES = (
    ("api_request", 0.55),
    ("gpu_seconds", 0.2),
    ("tokens", 0.2),
    ("storage_gb_hours", 0.049),
    ("webhook_delivery", 0.001),
)


def write_log(
    path: Path,
    *,
    events: int,
    days: float,
    end: datetime,
    seed: int = 7,
    customers: int = 2_000,
    pad_bytes: int = 180,
) -> int:
    """Write `events` lines spread evenly over `days` ending at `end`; return bytes written."""
    rng = random.Random(seed)
    names = [name for name, _ in EVENT_TYPES]
    shares = [share for _, share in EVENT_TYPES]
    start = end - timedelta(days=days)
    step_s = days * 86_400 / max(events, 1)
    start_epoch = start.timestamp()
    written = 0
    with path.open("wb", buffering=4 << 20) as out:
        batch: list[bytes] = []
        for index in range(events):
            ts = datetime.fromtimestamp(start_epoch + index * step_s, tz=UTC)
            event_type = rng.choices(names, shares)[0]
            customer = f"cust_{int(rng.paretovariate(1.2) * 7) % customers:05d}"
            line = {
                "transaction_id": f"txn_{seed}_{index:012d}",
                "customer_id": customer,
                "event_type": event_type,
                "timestamp": ts.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                "properties": {
                    "quantity": rng.randint(1, 5000),
                    "region": rng.choice(("us-east-1", "eu-west-1", "ap-south-1")),
                    "request_id": f"{rng.getrandbits(128):032x}",
                    "note": "x" * rng.randint(0, pad_bytes),
                },
            }
            batch.append(json.dumps(line, separators=(",", ":")).encode() + b"\n")
            if len(batch) >= 10_000:
                chunk = b"".join(batch)
                out.write(chunk)
                written += len(chunk)
                batch.clear()
        chunk = b"".join(batch)
        out.write(chunk)
        written += len(chunk)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out", type=Path)
    parser.add_argument("--events", type=int, default=6_000_000)
    parser.add_argument("--days", type=float, default=30.0)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    end = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)
    size = write_log(args.out, events=args.events, days=args.days, end=end, seed=args.seed)
    print(f"wrote {size / 1e9:.2f} GB to {args.out}")


if __name__ == "__main__":
    main()
