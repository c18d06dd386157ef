"""What leakwatch writes only its owner can read, whatever the umask; no symlink is followed."""

import gzip
import json
import os
import stat
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from leakwatch.clock import SystemClock
from leakwatch.core.events import format_timestamp
from leakwatch.core.weeks import IsoWeek
from leakwatch.daemon.leader import SqliteLockFile, sqlite_lock_path
from leakwatch.errors import LeakwatchError
from leakwatch.files import write_private
from leakwatch.simulator import SimulatorServer, build_demo_state

TOKEN = "files-test-token-123456"


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def _modes_below(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): _mode(p) for p in [root, *root.rglob("*")]}


def test_a_cycle_and_a_report_leave_private_files_under_a_loose_umask(tmp_path: Path) -> None:
    clock = SystemClock()
    when = clock.now() - timedelta(hours=3)
    log = tmp_path / "usage.jsonl.gz"
    events = [
        {
            "transaction_id": f"txn-{i}",
            "customer_id": "acme",
            "event_type": "api_request",
            "timestamp": format_timestamp(when + timedelta(seconds=i)),
            "properties": {},
        }
        for i in range(30)
    ]
    log.write_bytes(gzip.compress("".join(json.dumps(e) + "\n" for e in events).encode()))
    log.chmod(0o600)
    state, data, reports = tmp_path / "state", tmp_path / "data", tmp_path / "reports"
    (tmp_path / "leakwatch.toml").write_text(
        f"""
database_url = "sqlite:///{data / "leakwatch.db"}"
state_dir = "{state}"
[metronome]
requests_per_second = 50
[[sources]]
name = "gateway"
type = "jsonl"
path = "{log}"
sample_size = 30
settle_delay = "1m"
[report]
out_dir = "{reports}"
"""
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LEAKWATCH_", "METRONOME_"))}
    week = str(IsoWeek.containing(when, ZoneInfo("UTC")))
    with SimulatorServer(build_demo_state(clock=clock), token=TOKEN) as server:
        env.update({"METRONOME_BEARER_TOKEN": TOKEN, "METRONOME_BASE_URL": server.base_url})
        for args in (["check"], ["report", "--week", week]):
            result = subprocess.run(
                [sys.executable, "-m", "leakwatch", *args],
                cwd=tmp_path,
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
                umask=0o022,
            )
            assert result.returncode == 0, result.stdout + result.stderr
    lock = SqliteLockFile(sqlite_lock_path(f"sqlite:///{data / 'leakwatch.db'}", state))
    old_umask = os.umask(0o022)
    try:
        assert lock.try_acquire()
    finally:
        os.umask(old_umask)
        lock.release()

    written = {**_modes_below(state), **_modes_below(data)}
    assert any(name.endswith(".lwz") for name in written), written  # the .gz sidecar
    assert any(name.endswith(".db") for name in written), written
    assert any(name.endswith(".lock") for name in written), written
    for name, mode in written.items():
        is_dir = (state / name).is_dir() or (data / name).is_dir()
        assert mode == (0o700 if is_dir else 0o600), (name, oct(mode))
    report_modes = _modes_below(reports)
    assert report_modes.pop(".") == 0o750
    assert len(report_modes) == 4
    assert set(report_modes.values()) == {0o640}, report_modes


def test_the_lock_file_is_never_opened_through_a_symlink(tmp_path: Path) -> None:
    target = tmp_path / "precious"
    target.write_text("keep me\n")
    link = tmp_path / "leakwatch.lock"
    link.symlink_to(target)
    with pytest.raises(LeakwatchError, match="symlink"):
        SqliteLockFile(link).try_acquire()
    assert target.read_text() == "keep me\n"


def test_a_private_write_replaces_a_planted_symlink_instead_of_following_it(
    tmp_path: Path,
) -> None:
    target = tmp_path / "precious"
    target.write_text("keep me\n")
    report = tmp_path / "leakage-2026-W47.md"
    report.symlink_to(target)
    write_private(report, b"# report\n", 0o640)
    assert target.read_text() == "keep me\n"
    assert not report.is_symlink()
    assert report.read_bytes() == b"# report\n"
    assert _mode(report) == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["leakage-2026-W47.md", "precious"]
