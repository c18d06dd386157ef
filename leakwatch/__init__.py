"""leakwatch: catch revenue leakage in usage-based billing on Metronome."""

from typing import Any


def __getattr__(name: str) -> Any:
    # `__version__` is read from the installed distribution (the one pyproject.toml
    # declares) only when asked: importlib.metadata costs every command ~0.1 s to start.
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("leakwatch")
        except PackageNotFoundError:  # a source tree that was never installed
            return "0+unknown"
    raise AttributeError(f"module 'leakwatch' has no attribute {name!r}")
