"""leakwatch: catch revenue leakage in usage-based billing on Metronome."""

from importlib.metadata import PackageNotFoundError, version

try:
    # One version, the one pyproject.toml declares, as the installed distribution says.
    __version__ = version("leakwatch")
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"
