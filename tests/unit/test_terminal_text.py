"""Text from events reaches the terminal as written: never eaten as rich markup."""

from datetime import UTC, datetime, timedelta

from rich.console import Console

from leakwatch.views.status import RateRow, StatusView
from leakwatch.views.terminal import print_status


def _row(group: str) -> RateRow:
    return RateRow(
        group=group,
        counts={"matched": 9, "missing": 1},
        sampled=10,
        decided=10,
        leaks=1,
        leak_rate=0.1,
        lower=0.02,
        upper=0.4,
    )


def test_group_names_with_brackets_are_printed_verbatim() -> None:
    console = Console(record=True, width=200)
    view = StatusView(
        now=datetime(2026, 11, 20, tzinfo=UTC),
        window=timedelta(hours=24),
        overall=_row("all"),
        by_source=[_row("gateway")],
        by_event_type=[_row("[bold]api")],
        top_customers=[_row("[acme-eu]")],
        open_alerts=[],
        outbox={},
        last_cycle=None,
    )
    print_status(console, view)
    text = console.export_text()
    assert "[acme-eu]" in text
    assert "[bold]api" in text
