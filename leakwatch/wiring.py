"""The one place that builds engines, clients, sources and notifiers from Settings. I/O.

Commands call these and pass what they build in: `Runtime` (pipeline/runtime.py)
receives its engine, search client, cycle, outbox sender and report Slack clients from
`build_runtime`; the daemon gets its runtime, sources and leader from here too. Nothing
else reads configuration or the environment, or opens an engine or a client.
"""

import random
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import structlog

from leakwatch.config import Settings, load_settings
from leakwatch.errors import LeakwatchError, StoreError, UsageProblem

if TYPE_CHECKING:
    # The store (SQLAlchemy, Alembic) is imported where it is opened: `leakwatch sample`
    # and `--help` never load it.
    from sqlalchemy import Engine
    from sqlalchemy.engine import URL

    from leakwatch.clock import Clock
    from leakwatch.config import AlertRuleSettings, SourceSettings
    from leakwatch.core.alerting import AlertRule
    from leakwatch.core.classify import ClassifyPolicy
    from leakwatch.daemon.leader import Leadership
    from leakwatch.metronome.client import SearchClient, SearchObserver
    from leakwatch.notify.report_send import ReportSlack
    from leakwatch.notify.slack import Notifier
    from leakwatch.pipeline.check import CheckCycle, LookupProgress
    from leakwatch.pipeline.runtime import Runtime
    from leakwatch.sources.jsonl import JsonlSource
    from leakwatch.sources.parquet import ParquetSource
    from leakwatch.sources.specs import SourceSpec
    from leakwatch.sources.sql import SqlSource


def settings_for(config: Path | None, *, require_file: bool = False) -> Settings:
    """Load settings; a problem raises ConfigError (a UsageProblem) naming every key."""
    return load_settings(config, require_file=require_file)


def checked_store_url(settings: Settings) -> "URL":
    """The store's URL, checked before anything connects (UsageProblem says what to fix)."""
    from leakwatch.store.db import store_url

    try:
        return store_url(settings.database_url)
    except StoreError as exc:
        raise UsageProblem(str(exc)) from None


def open_engine(settings: Settings, *, migrate: bool = True) -> "Engine":
    """Connect to the store and bring its schema up to date (or check it is)."""
    engine, _revisions = _open_store(settings, migrate=migrate)
    return engine


def upgrade_store(settings: Settings) -> tuple[str | None, str | None]:
    """Apply pending migrations; return the schema revision before and after."""
    engine, revisions = _open_store(settings, migrate=True)
    engine.dispose()
    return revisions


def _open_store(
    settings: Settings, *, migrate: bool
) -> tuple["Engine", tuple[str | None, str | None]]:
    from sqlalchemy.exc import OperationalError, SQLAlchemyError

    from leakwatch.store.db import head_revision, is_up_to_date, make_engine, upgrade

    try:
        engine = make_engine(settings.database_url)
    except StoreError as exc:
        raise UsageProblem(str(exc)) from None
    try:
        if migrate:
            revisions = upgrade(engine)
        elif not is_up_to_date(engine):
            raise StoreError("the database schema is not current; run `leakwatch db upgrade`")
        else:
            revisions = (head_revision(), head_revision())
    except OperationalError as exc:
        raise StoreError(
            f"cannot reach the database at {engine.url.render_as_string(hide_password=True)}: "
            f"{_first_line(exc)}"
        ) from None
    except SQLAlchemyError as exc:
        raise StoreError(f"database error: {_first_line(exc)}") from None
    structlog.get_logger().debug(
        "store.opened", url=engine.url.render_as_string(hide_password=True), migrated=migrate
    )
    return engine, revisions


def require_token(settings: Settings) -> str:
    if settings.metronome_token is None or not settings.metronome_token.get_secret_value():
        raise UsageProblem(
            "METRONOME_BEARER_TOKEN is not set; export it with your Metronome API token"
        )
    return settings.metronome_token.get_secret_value()


def metronome_endpoint(settings: Settings) -> dict[str, str]:
    """Where the bearer token goes (scheme and host), for the start-up log."""
    parts = urlsplit(settings.metronome.base_url)
    return {"metronome_scheme": parts.scheme, "metronome_host": parts.netloc.rpartition("@")[2]}


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


__all__ = ["open_engine", "require_token", "settings_for"]


# -- the check cycle ---------------------------------------------------------------


def source_spec(source: "SourceSettings", quantities: dict[str, str] | None = None) -> "SourceSpec":
    """Translate a configured source into the sources package's plain spec."""
    from zoneinfo import ZoneInfo

    from leakwatch.core.timestamps import TimestampFormat, TimestampUnit
    from leakwatch.sources.specs import JsonlSourceSpec, ParquetSourceSpec, SqlSourceSpec

    quantities = quantities or {}

    common: dict[str, Any] = {
        "name": source.name,
        "fields": source.fields.paths(),
        "timestamp_format": TimestampFormat(
            unit=TimestampUnit(source.fields.timestamp_unit),
            zone=ZoneInfo(source.timezone) if source.timezone else None,
        ),
        "settle_delay": source.settle_delay,
        "max_age": source.max_age,
        "sample_size": source.sample_size,
        "stratify_by": source.stratify_by,
        "floor": source.stratum_floor,
        "seed": source.seed,
        "quantity_properties": quantities,
    }
    try:
        if source.type == "jsonl":
            assert source.path is not None
            return JsonlSourceSpec(
                path=source.path,
                max_line_bytes=source.max_line_bytes,
                storage_options=source.storage_options,
                **common,
            )
        if source.type == "parquet":
            assert source.path is not None
            return ParquetSourceSpec(
                path=source.path, storage_options=source.storage_options, **common
            )
        assert source.url is not None
        return SqlSourceSpec(url=source.url, table=source.table, query=source.query, **common)
    except ValueError as exc:
        raise UsageProblem(f"sources[{source.name}]: {exc}") from None


def classify_policy(settings: Settings, source: "SourceSettings | None") -> "ClassifyPolicy":
    from leakwatch.core.classify import ClassifyPolicy

    expected = {} if source is None else source.expected_metrics
    return ClassifyPolicy(
        missing_grace=settings.checks.missing_grace,
        min_checks_before_missing=settings.checks.min_checks_before_missing,
        expected_metrics={k: frozenset(v) for k, v in expected.items()},
    )


def build_search_client(
    settings: Settings, clock: "Clock", *, observer: "SearchObserver | None" = None
) -> "SearchClient":
    from leakwatch.metronome.client import SearchClient

    token = require_token(settings)
    structlog.get_logger().info("metronome.endpoint", **metronome_endpoint(settings))
    return SearchClient(
        base_url=settings.metronome.base_url,
        token=token,
        clock=clock,
        requests_per_second=settings.metronome.requests_per_second,
        max_ids_per_request=settings.metronome.max_ids_per_request,
        timeout_s=settings.metronome.timeout_seconds,
        max_retries=settings.metronome.max_retries,
        observer=observer,
    )


def build_check_cycle(
    settings: Settings,
    *,
    engine: "Engine",
    clock: "Clock",
    search: "SearchClient",
    should_stop: "Callable[[], bool] | None" = None,
    rng: "random.Random | None" = None,
    lookup_progress: "LookupProgress | None" = None,
) -> "CheckCycle":
    """Assemble one CheckCycle from settings; sources are built, not yet read."""
    from leakwatch.pipeline.check import CheckCycle, ConfiguredSource, CycleSettings
    from leakwatch.store.checkpoint_repo import SqlCheckpointStore
    from leakwatch.store.db import session_factory
    from leakwatch.store.outcomes import RecheckPolicy

    if not settings.sources:
        raise UsageProblem(
            "no [[sources]] configured; add one (see `leakwatch init`) so there is something "
            "to check"
        )
    sessions = session_factory(engine)
    configured = [
        ConfiguredSource(
            source=build_source(settings, s),
            sample_size=s.sample_size,
            policy=classify_policy(settings, s),
            stratify_by=s.stratify_by,
            floor=s.stratum_floor,
            quantity_properties=settings.report.quantity_properties(),
        )
        for s in settings.sources
    ]
    return CheckCycle(
        sessions=sessions,
        sources=configured,
        search=search,
        checkpoints=lambda session, now: SqlCheckpointStore(session, updated_at=now),
        clock=clock,
        settings=CycleSettings(
            requests_per_second=settings.metronome.requests_per_second,
            max_ids_per_request=settings.metronome.max_ids_per_request,
            every=settings.checks.every,
            budget_share=settings.metronome.cycle_budget_share,
            recheck_share=settings.checks.recheck_share,
            recheck=RecheckPolicy(
                pending_every=settings.checks.recheck_pending_every,
                unmatched_customer_every=settings.checks.recheck_unmatched_customer_every,
            ),
            default_policy=classify_policy(settings, None),
            tail_slice=settings.checks.tail_slice,
            rules=tuple(alert_rule(rule) for rule in settings.alerts),
            probe_share=settings.checks.probe_share,
            probe_per_group=settings.checks.probe_per_group,
        ),
        rng=rng,
        should_stop=should_stop or (lambda: False),
        lookup_progress=lookup_progress,
    )


def build_source(
    settings: Settings, source: "SourceSettings"
) -> "JsonlSource | SqlSource | ParquetSource":
    """Build one configured source (not yet read); the caller closes it."""
    from leakwatch.sources.factory import make_source

    return make_source(
        source_spec(source, settings.report.quantity_properties()), state_dir=settings.state_dir
    )


def alert_rule(rule: "AlertRuleSettings") -> "AlertRule":
    from leakwatch.core.alerting import AlertRule, DecisionTest, GroupBy, RateKind, Severity

    return AlertRule(
        name=rule.name,
        rate=RateKind(rule.rate),
        threshold=rule.threshold,
        window=rule.window,
        min_samples=rule.min_samples,
        confidence=rule.confidence,
        by=GroupBy(rule.by) if rule.by else None,
        severity=Severity(rule.severity),
        for_=rule.for_,
        repeat_interval=rule.repeat_interval,
        decision=DecisionTest(rule.decision),
    )


def build_notifier(settings: Settings) -> "Notifier | None":
    """Slack by bot token (threads, edits) or webhook; None when Slack is not configured."""
    from leakwatch.notify.slack import SlackNotifier, WebhookNotifier

    if settings.slack_bot_token is not None:
        if not settings.slack.channel:
            raise LeakwatchError(
                'SLACK_BOT_TOKEN is set but [slack] channel is not; set channel = "#alerts"'
            )
        return SlackNotifier(
            token=settings.slack_bot_token.get_secret_value(),
            channel=settings.slack.channel,
            base_url=settings.slack_base_url,
        )
    if settings.slack_webhook_url is not None:
        return WebhookNotifier(url=settings.slack_webhook_url.get_secret_value())
    return None


def build_report_slack(settings: Settings) -> "ReportSlack | None":
    """The clients the weekly report is sent through; None when Slack is not configured.

    Building them does no I/O; whether a bot token has its channel is checked on send.
    """
    from slack_sdk import WebClient, WebhookClient

    from leakwatch.notify.report_send import ReportSlack
    from leakwatch.notify.slack import quiet_sdk_logger

    if settings.slack_bot_token is not None:
        client = WebClient(
            token=settings.slack_bot_token.get_secret_value(),
            base_url=settings.slack_base_url or WebClient.BASE_URL,
            logger=quiet_sdk_logger(),
        )
        return ReportSlack(client=client, channel=settings.slack.channel or None)
    if settings.slack_webhook_url is not None:
        webhook = WebhookClient(
            url=settings.slack_webhook_url.get_secret_value(), logger=quiet_sdk_logger()
        )
        return ReportSlack(webhook=webhook)
    return None


def build_runtime(
    settings: Settings,
    *,
    clock: "Clock",
    observer: "SearchObserver | None" = None,
    should_stop: "Callable[[], bool] | None" = None,
    migrate: bool = True,
    lookup_progress: "LookupProgress | None" = None,
) -> "Runtime":
    """Open the store, build the search client, cycle, sender and Slack clients; assemble.

    Whatever was opened is released again when a later part cannot be built.
    """
    from leakwatch.notify.outbox import OutboxSender
    from leakwatch.pipeline.runtime import Runtime
    from leakwatch.store.db import session_factory

    engine = open_engine(settings, migrate=migrate)
    search: SearchClient | None = None
    cycle: CheckCycle | None = None
    try:
        search = build_search_client(settings, clock, observer=observer)
        cycle = build_check_cycle(
            settings,
            engine=engine,
            clock=clock,
            search=search,
            should_stop=should_stop,
            lookup_progress=lookup_progress,
        )
        notifier = build_notifier(settings)
        sender = (
            OutboxSender(session_factory(engine), notifier, clock) if notifier is not None else None
        )
        return Runtime(
            settings,
            clock=clock,
            engine=engine,
            search=search,
            cycle=cycle,
            sender=sender,
            rules=[alert_rule(r) for r in settings.alerts],
            report_slack=build_report_slack(settings),
        )
    except BaseException:
        for source in cycle.sources if cycle is not None else []:
            source.close()
        if search is not None:
            search.close()
        engine.dispose()
        raise


def build_leader(settings: Settings) -> "Leadership":
    """The store's one lock: a Postgres advisory lock elects the leader; SQLite, a lock file.

    A URL that cannot be used says so first, before any lock file is made for it.
    """
    from leakwatch.daemon.leader import store_lock

    checked_store_url(settings)
    return store_lock(
        settings.database_url, key=settings.daemon.leader_lock_key, state_dir=settings.state_dir
    )
