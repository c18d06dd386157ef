"""Benchmark draws from an S3 object against the same draw from a local file.

Target (issue 14): 1,000 draws from a 2 GB JSONL object cost ≤ 3 ranged GETs per sample
and finish ≤ 3 × the same draw (same seed, same bytes) from the local file, over
loopback. The S3 API is moto's server on 127.0.0.1 (`bench/moto_ranged.py`: moto with
ranged GETs served by seeking, as S3 does; stock moto copies the whole object per GET).
GETs are counted by a botocore hook on the session s3fs uses: every S3 API call leakwatch
makes is counted, by operation.

Also printed, to say where the time goes: moto's own cost of one small ranged GET (the
floor: GETs × it is what any client would pay), and leakwatch's time over that floor.

    .venv/bin/python bench/bench_object_store.py              # 2 GB object
    .venv/bin/python bench/bench_object_store.py --size-gb 0.2
"""

import argparse
import os
import random
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT.parent))

from gen_log import write_log  # noqa: E402

from tests.fakes.moto_s3 import moto_s3_server  # noqa: E402

END = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)
NOW = END + timedelta(minutes=30)
BYTES_PER_EVENT = 333
DRAWS = 1000
BUCKET = "bench-usage"


def counting_session() -> tuple[Any, Counter[str]]:
    """An aiobotocore session whose every S3 call is counted by operation name."""
    from aiobotocore.session import AioSession

    calls: Counter[str] = Counter()

    def count(model: Any, **_: Any) -> None:
        calls[model.name] += 1

    session = AioSession()
    session.register("before-call.s3", count)
    return session, calls


def timed_draw(path: str, state: Path, seed: int, options: dict[str, Any]) -> tuple[float, Any]:
    from leakwatch.sources import JsonlSourceSpec, make_source

    spec = JsonlSourceSpec(
        name="bench",
        path=path,
        settle_delay=timedelta(minutes=10),
        max_age=timedelta(days=33),
        sample_size=DRAWS,
        storage_options=options,
    )
    source = make_source(spec, state_dir=state)
    started = time.perf_counter()
    result = source.sample(DRAWS, now=NOW, rng=random.Random(seed))
    return time.perf_counter() - started, result


def report(name: str, value: float, baseline: float, target: float) -> bool:
    ratio = value / baseline if baseline else float("inf")
    ok = ratio <= target
    print(
        f"{name:<48} {value:9.3f} vs {baseline:9.3f}  ratio "
        f"{ratio:7.3f}  (target ≤ {target})  {'PASS' if ok else 'FAIL'}",
        flush=True,
    )
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size-gb", type=float, default=2.0)
    parser.add_argument("--out", type=Path, default=ROOT / "out")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--latency-ms",
        type=float,
        default=0.0,
        help="model a network S3's first-byte latency on every GET (0: bare loopback)",
    )
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    events = int(args.size_gb * 1e9 / BYTES_PER_EVENT)
    plain = args.out / f"bench_{events}.jsonl"
    if not plain.exists():
        print(f"generating {events:,} events into {plain} …", flush=True)
        write_log(plain, events=events, days=30, end=END, seed=7)
    size = plain.stat().st_size
    print(f"object: {size / 1e9:.2f} GB, {DRAWS:,} draws, seed {args.seed}", flush=True)

    os.environ["MOTO_GET_LATENCY_MS"] = str(args.latency_ms)
    print(f"modelled GET latency: {args.latency_ms:g} ms", flush=True)
    with moto_s3_server(launcher=(str(ROOT / "moto_ranged.py"),)) as server:
        os.environ.update(server.environment())
        client: Any = server.client()
        client.create_bucket(Bucket=BUCKET)
        started = time.perf_counter()
        from boto3.s3.transfer import TransferConfig

        client.upload_file(
            str(plain),
            BUCKET,
            "gateway/usage.jsonl",
            Config=TransferConfig(multipart_chunksize=256 << 20, max_concurrency=2),
        )
        print(f"uploaded to moto in {time.perf_counter() - started:.1f} s", flush=True)

        # moto's floor: one small ranged GET through the same s3fs stack, best of many.
        session, calls = counting_session()
        from leakwatch.sources.objects import list_objects

        (obj,) = list_objects(f"s3://{BUCKET}/gateway/*.jsonl", {"session": session})
        rng = random.Random(5)
        floor_s = float("inf")
        for _ in range(200):
            offset = rng.randrange(size - 20_000)
            t0 = time.perf_counter()
            obj.read_range(offset, offset + 16_384)
            floor_s = min(floor_s, time.perf_counter() - t0)
        samples_floor: list[float] = []
        for _ in range(200):
            offset = rng.randrange(size - 20_000)
            t0 = time.perf_counter()
            obj.read_range(offset, offset + 16_384)
            samples_floor.append(time.perf_counter() - t0)
        mean_get_s = sum(samples_floor) / len(samples_floor)
        print(f"one 16 KiB ranged GET: best {floor_s * 1e3:.2f} ms, mean {mean_get_s * 1e3:.2f} ms")

        local_s, local = timed_draw(str(plain), args.out / "state-local", args.seed, {})
        local_s = min(local_s, timed_draw(str(plain), args.out / "state-local", args.seed, {})[0])
        session, calls = counting_session()
        remote_s, remote = timed_draw(
            f"s3://{BUCKET}/gateway/*.jsonl*",
            args.out / "state-s3",
            args.seed,
            {"session": session},
        )
    same = [e.event for e in remote.events] == [e.event for e in local.events]
    gets = calls["GetObject"]
    print(f"S3 calls during the draw: {dict(calls)}; same events as local: {same}")
    print(f"samples drawn: {len(remote.events)}; population ≈ {remote.population:,.0f}")
    results = [
        report("ranged GETs per sample (vs 1)", gets / max(len(remote.events), 1), 1.0, 3.0),
        report("1,000 draws: S3 object vs local file (s)", remote_s, local_s, 3.0),
    ]
    one_at_a_time = gets * mean_get_s
    print(
        f"    the same GETs one at a time would take ≈ {one_at_a_time:.2f} s (GETs × mean GET); "
        f"fetched a batch of draws at once: {one_at_a_time / remote_s:.1f}× faster"
    )
    results.append(same)
    print("all targets met" if all(results) else "some targets missed")


if __name__ == "__main__":
    main()
