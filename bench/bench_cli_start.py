"""How fast the CLI starts, against baselines measured in the same run.

Targets (issue #16): a whole `leakwatch sample SOURCE -n 1000` on a 2 GB log takes at
most 1.5 × `wc -l` on the same log; `leakwatch --help` costs little over a bare
`python -c pass`. Each command runs `--repeat` times and the fastest run counts (the
machine's noise only ever adds time). The log is reused if it exists, else generated.

    python bench/bench_cli_start.py --log /work/benchdata/bench_6006006.jsonl
    python bench/bench_cli_start.py --quick          # a 200 MB log in bench/out/
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from gen_log import write_log


def fastest(command: list[str], *, cwd: Path, repeat: int, env: dict[str, str]) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        subprocess.run(command, cwd=cwd, env=env, stdout=subprocess.DEVNULL, check=True)
        best = min(best, time.perf_counter() - started)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--log", type=Path, help="an existing JSONL log (default: generate)")
    parser.add_argument("--quick", action="store_true", help="a 200 MB log instead of 2 GB")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    out = Path(__file__).resolve().parent / "out"
    out.mkdir(exist_ok=True)
    log = args.log
    if log is None:
        events = 600_000 if args.quick else 6_000_000
        log = out / f"cli_start_{events}.jsonl"
        if not log.exists():
            write_log(log, events=events, days=30, end=datetime.now(UTC))
    work = Path(tempfile.mkdtemp(prefix="lw-cli-start-"))
    (work / "leakwatch.toml").write_text(
        f'state_dir = "{work / "state"}"\n'
        "[[sources]]\n"
        'name = "big"\ntype = "jsonl"\n'
        f'path = "{log}"\nsettle_delay = "0s"\nmax_age = "33d"\n'
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LEAKWATCH_", "METRONOME_"))}
    python = sys.executable
    size_gb = log.stat().st_size / 1e9
    wc = fastest(["wc", "-l", str(log)], cwd=work, repeat=args.repeat, env=env)
    bare = fastest([python, "-c", "pass"], cwd=work, repeat=args.repeat, env=env)
    helps = fastest([python, "-m", "leakwatch", "--help"], cwd=work, repeat=args.repeat, env=env)
    sample = fastest(
        [python, "-m", "leakwatch", "sample", "big", "-n", "1000", "--seed", "1"],
        cwd=work,
        repeat=args.repeat,
        env=env,
    )
    print(f"log: {log} ({size_gb:.2f} GB); fastest of {args.repeat} runs each")
    print(f"wc -l                        {wc:7.3f} s   (baseline)")
    print(f"python -c pass               {bare:7.3f} s   (baseline)")
    print(f"leakwatch --help             {helps:7.3f} s   {helps - bare:.3f} s over a bare start")
    ratio = sample / wc
    verdict = "meets" if ratio <= 1.5 else "misses"
    print(
        f"leakwatch sample -n 1000     {sample:7.3f} s   {ratio:.2f} × wc -l "
        f"({verdict} the ≤ 1.5 × goal)"
    )


if __name__ == "__main__":
    main()
