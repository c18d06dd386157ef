"""The first cycle on a long history checks at once; the tail counts it afterwards.

With no time to tail before the draw, the cycle still samples and looks up, says its
volumes are estimated (in the summary, `status` and the report's notes), and the
catch-up after it counts the rest, so the next cycle says counted.
"""

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from leakwatch.store.db import session_factory, transaction
from leakwatch.store.models import VolumeCount
from leakwatch.store.report_queries import fetch_volumes_estimated
from leakwatch.views.status import build_status
from tests.support.cycle import World, build_world


@pytest.fixture
def world(db_url: str, tmp_path: Path) -> Iterator[World]:
    """The usage log split over three files, and no time to tail before a draw."""
    for built in build_world(db_url, tmp_path, strings=False):
        log = tmp_path / "usage.jsonl"
        parts = tmp_path / "logs"
        parts.mkdir()
        lines = log.read_bytes().splitlines(keepends=True)
        third = len(lines) // 3 + 1
        for index in range(3):
            (parts / f"usage-{index}.jsonl").write_bytes(
                b"".join(lines[index * third : (index + 1) * third])
            )
        settings = built.settings
        source = settings.sources[0].model_copy(update={"path": str(parts / "*.jsonl")})
        built.settings = settings.model_copy(
            update={
                "sources": [source],
                "checks": settings.checks.model_copy(update={"tail_slice": timedelta(0)}),
            }
        )
        yield built


def _counted(world: World) -> int:
    with transaction(session_factory(world.engine)) as session:
        return int(session.execute(select(func.sum(VolumeCount.events))).scalar_one() or 0)


def test_the_first_cycle_checks_before_the_history_is_counted(world: World) -> None:
    total = len(world.scenario.events)
    with world.search_client() as search:
        cycle = world.cycle(search)
        first = cycle.run()
        report = first.sources["gateway"]
        assert report.volumes == "estimated"
        assert report.tail_behind_bytes > 0
        assert first.checked > 0, "lookups did not wait for the tail"
        assert report.events_per_day is not None and report.events_per_day > 0
        assert 0 < _counted(world) < total
        sessions = session_factory(world.engine)
        status = build_status(sessions, now=world.clock.now(), window=timedelta(hours=24))
        assert status.volumes == {"gateway": "estimated"}
        with transaction(sessions) as session:  # the weekly report's note
            week = (world.clock.now() - timedelta(days=1), world.clock.now() + timedelta(days=1))
            assert fetch_volumes_estimated(session, *week) == ("gateway",)
        assert cycle.catch_up() is True
        assert _counted(world) == total
        world.clock.advance(15 * 60)
        second = world.cycle(search).run()
    assert second.sources["gateway"].volumes == "counted"
    status = build_status(sessions, now=world.clock.now(), window=timedelta(hours=24))
    assert status.volumes == {"gateway": "counted"}
