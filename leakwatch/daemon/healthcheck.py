"""`python -m leakwatch.daemon.healthcheck`: the container's HEALTHCHECK. Stdlib only.

Probes `/healthz` at the address the daemon listens on, found the way the daemon finds
it: `LEAKWATCH_HEALTH_ADDRESS` if set (the environment wins), else `[daemon]
health_address` in the config file (`LEAKWATCH_CONFIG`, else ./leakwatch.toml), else
the default. A wildcard host (0.0.0.0, ::) is probed on loopback. Exit 0 when the
answer is 200, 1 otherwise (Docker's convention), with one line saying why.
"""

import os
import sys
import tomllib
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path

DEFAULT_ADDRESS = "127.0.0.1:9108"
TIMEOUT_S = 4.0


def health_address(environ: Mapping[str, str]) -> str:
    """The address the daemon serves /healthz on, by the daemon's own precedence."""
    from_env = environ.get("LEAKWATCH_HEALTH_ADDRESS", "").strip()
    if from_env:
        return from_env
    config = Path(environ.get("LEAKWATCH_CONFIG") or "leakwatch.toml")
    try:
        data = tomllib.loads(config.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
        return DEFAULT_ADDRESS
    daemon = data.get("daemon")
    address = daemon.get("health_address") if isinstance(daemon, dict) else None
    return address if isinstance(address, str) and address else DEFAULT_ADDRESS


def probe_url(address: str) -> str:
    host, _, port = address.rpartition(":")
    host = host.strip("[]")
    if host in ("", "0.0.0.0", "::"):  # noqa: S104  (a wildcard bind is probed on loopback)
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}/healthz"


def main() -> int:
    url = probe_url(health_address(os.environ))
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as answer:  # noqa: S310
            status = int(answer.status)
    except urllib.error.HTTPError as error:
        status = error.code
    except (OSError, ValueError) as error:
        sys.stdout.write(f"unhealthy: {url}: {error}\n")
        return 1
    if status != 200:
        sys.stdout.write(f"unhealthy: {url} answered {status}\n")
        return 1
    sys.stdout.write(f"healthy: {url}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
