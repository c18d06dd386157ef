"""A weekly report no leader wrote is caught up; one already written is not redone."""

from datetime import UTC, datetime

from pydantic import SecretStr

from leakwatch.config import settings_from_mapping
from leakwatch.pipeline.report import weekly_report_missed
from leakwatch.store.db import SessionFactory
from leakwatch.store.report_record import mark_sent, save_content

# Wednesday 25 Nov 2026: the report for W47 fell due on Monday 23 Nov, 09:00.
NOW = datetime(2026, 11, 25, 12, tzinfo=UTC)


def test_missing_report_is_due_then_not_once_written(sessions: SessionFactory) -> None:
    settings = settings_from_mapping({"report": {"weekly": "mon 09:00", "timezone": "UTC"}})
    assert weekly_report_missed(settings, sessions, now=NOW)
    save_content(sessions, "2026-W47", {"week": "2026-W47"}, NOW)
    assert not weekly_report_missed(settings, sessions, now=NOW)
    # Before Monday 09:00 the due report is the previous week's.
    assert weekly_report_missed(settings, sessions, now=datetime(2026, 11, 23, 8, tzinfo=UTC))


def test_with_slack_an_unsent_report_is_still_due(sessions: SessionFactory) -> None:
    settings = settings_from_mapping({}).model_copy(
        update={"slack_webhook_url": SecretStr("https://hooks.example/x")}
    )
    save_content(sessions, "2026-W47", {"week": "2026-W47"}, NOW)
    assert weekly_report_missed(settings, sessions, now=NOW)
    mark_sent(sessions, "2026-W47", NOW)
    assert not weekly_report_missed(settings, sessions, now=NOW)
