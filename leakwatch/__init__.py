"""leakwatch: catch revenue leakage in usage-based billing on Metronome."""

__version__ = "0.1.0"
