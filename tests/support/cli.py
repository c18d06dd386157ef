"""The CLI as a user runs it: `leakwatch` in a subprocess, and a set-up with a simulated
Metronome, a source log and a config file (`Setup`)."""

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from leakwatch.simulator import SimulatorServer
from leakwatch.simulator.scenario import Scenario


def clean_environment() -> dict[str, str]:
    """This process's environment without leakwatch's, Metronome's or Slack's variables,
    so a test's subprocess sees only the settings the test gives it."""
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("LEAKWATCH_", "METRONOME_", "SLACK_"))
    }


def leakwatch(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    full_env = clean_environment()
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "leakwatch", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


TOKEN = "cli-test-token-123456"


@dataclass
class Setup:
    cwd: Path
    env: dict[str, str]
    scenario: Scenario
    server: SimulatorServer

    def run(
        self, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "leakwatch", *args],
            cwd=self.cwd,
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
