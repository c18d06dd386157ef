"""The reliability suite's ledger: what each test injected and what came out.

Every test here fills a `Ledger` (cases run, faults injected, events and
notifications lost or doubled, crashes) *before* asserting, so the figures are
recorded even when an assertion fails. When `LEAKWATCH_RELIABILITY_LEDGER` names a
file, each ledger is appended to it as one JSON line; `bench/reliability_report.py`
runs the suite that way and writes `docs/reliability.md` from those lines.
"""

import json
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass

import pytest

LEDGER_ENV = "LEAKWATCH_RELIABILITY_LEDGER"


@dataclass
class Ledger:
    """One test's account of injected faults and their consequences."""

    area: str
    test: str
    cases: int = 0
    faults: int = 0
    events_lost: int = 0
    events_doubled: int = 0
    notifications_lost: int = 0
    notifications_doubled: int = 0
    crashes: int = 0


def _area(request: pytest.FixtureRequest) -> str:
    """The table row: the module's name (`test_fuzz.py` counts under `fuzz`)."""
    return str(request.node.module.__name__).rsplit(".", 1)[-1].removeprefix("test_")


@pytest.fixture
def ledger(request: pytest.FixtureRequest) -> Iterator[Ledger]:
    entry = Ledger(area=_area(request), test=request.node.nodeid)
    yield entry
    path = os.environ.get(LEDGER_ENV)
    if path:
        with open(path, "a", encoding="utf-8") as out:
            out.write(json.dumps(asdict(entry)) + "\n")
