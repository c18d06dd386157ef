"""A throwaway Postgres cluster of our own, so a test may stop and restart it.

The machine's server at 127.0.0.1:5432 is shared by every test and helper and is
never touched. This one lives in a temporary directory on a free loopback port,
built with the server's own `initdb` and `pg_ctl` (found under
/usr/lib/postgresql/*/bin, or on PATH). `initdb` refuses to run as root, and the
tests run as root in CI: then every command runs as the `postgres` system user
(`runuser -u postgres --`), which owns the directory. As any other user they run as
that user. `trust` authentication on loopback only; no password exists.
"""

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import pytest

RUN_AS = "postgres"


def _bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if found:
        return found[-1]
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} not found (install the Postgres server package)", pytrace=False)
    return path


def _as_owner(command: list[str]) -> list[str]:
    if os.geteuid() == 0:
        return ["runuser", "-u", RUN_AS, "--", *command]
    return command


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Cluster:
    data_dir: Path
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _ctl(self, *args: str) -> None:
        options = (
            f"-p {self.port} -k {self.data_dir} -c listen_addresses=127.0.0.1"
            " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        command = [_bin("pg_ctl"), "-D", str(self.data_dir), "-l", str(self.log), "-o", options]
        done = subprocess.run(
            _as_owner([*command, "-w", "-t", "60", *args]),
            capture_output=True,
            text=True,
            timeout=90,
            check=False,
        )
        if done.returncode != 0:
            server_log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise RuntimeError(f"pg_ctl {' '.join(args)}: {done.stderr}{done.stdout}\n{server_log}")

    def start(self) -> None:
        self._ctl("start")

    def stop(self) -> None:
        self._ctl("-m", "fast", "stop")

    def restart(self) -> None:
        self._ctl("-m", "fast", "restart")


@contextmanager
def own_cluster() -> Iterator[Cluster]:
    """initdb a cluster in a fresh temporary directory, start it, remove it afterwards.

    Not under pytest's tmp_path: pytest keeps that tree private to root (0700), and
    the server runs as `postgres`.
    """
    root = Path(tempfile.mkdtemp(prefix="leakwatch-pg-"))
    data_dir = root / "data"
    log = root / "server.log"
    if os.geteuid() == 0:
        shutil.chown(root, RUN_AS, RUN_AS)
    initdb = [_bin("initdb"), "-D", str(data_dir), "-A", "trust", "-U", "postgres"]
    try:
        subprocess.run(
            _as_owner([*initdb, "--no-sync", "-E", "UTF8", "--locale=C"]),
            check=True,
            capture_output=True,
            timeout=120,
        )
        cluster = Cluster(data_dir, _free_port(), log)
        cluster.start()
        try:
            yield cluster
        finally:
            with suppress(RuntimeError, subprocess.SubprocessError):
                cluster.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)
