"""The one place that builds engines, clients and services from Settings. I/O.

Commands call these; nothing else reads configuration or the environment.
"""

from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from leakwatch.config import ConfigError, Settings, load_settings
from leakwatch.errors import LeakwatchError, UsageProblem
from leakwatch.store.db import StoreError, is_up_to_date, make_engine, upgrade


def settings_for(config: Path | None, *, require_file: bool = False) -> Settings:
    """Load settings, turning config problems into a usage error that names them."""
    try:
        return load_settings(config, require_file=require_file)
    except ConfigError as exc:
        raise UsageProblem(str(exc)) from None


def open_engine(settings: Settings, *, migrate: bool = True) -> Engine:
    """Connect to the store and bring its schema up to date (or check it is)."""
    try:
        engine = make_engine(settings.database_url)
    except StoreError as exc:
        raise UsageProblem(f"database_url: {exc}") from None
    try:
        if migrate:
            upgrade(engine)
        elif not is_up_to_date(engine):
            raise LeakwatchError("the database schema is not current; run `leakwatch db upgrade`")
    except OperationalError as exc:
        raise LeakwatchError(
            f"cannot reach the database at {engine.url.render_as_string(hide_password=True)}: "
            f"{_first_line(exc)}"
        ) from None
    except SQLAlchemyError as exc:
        raise LeakwatchError(f"database error: {_first_line(exc)}") from None
    return engine


def require_token(settings: Settings) -> str:
    if settings.metronome_token is None or not settings.metronome_token.get_secret_value():
        raise UsageProblem(
            "METRONOME_BEARER_TOKEN is not set; export it with your Metronome API token"
        )
    return settings.metronome_token.get_secret_value()


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


__all__ = ["ConfigError", "open_engine", "require_token", "settings_for"]
