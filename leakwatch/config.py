"""Settings: one TOML file plus environment variables. Reads files and the environment.

The environment wins over the file, and secrets (Metronome token, Slack token or
webhook) come only from the environment. A bad config is rejected before anything
runs, with the key, the bad value and what is allowed: `ConfigError.problems`.
"""

import difflib
import ipaddress
import os
import tomllib
import typing
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import unquote, urlsplit

from pydantic import (
    AfterValidator,
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from leakwatch.core.durations import format_duration, parse_duration
from leakwatch.core.pricing import Price, parse_price, quantity_properties
from leakwatch.core.schedule import WeeklyTime
from leakwatch.errors import ConfigError, UsageProblem

DEFAULT_CONFIG_PATH = Path("leakwatch.toml")
DEFAULT_DATABASE_URL = "sqlite:///leakwatch.db"
DEFAULT_METRONOME_URL = "https://api.metronome.com"
MAX_SAMPLE_AGE = timedelta(days=33)
# Reports go to people (often through a group that ships them on): owner and group read.
DEFAULT_REPORT_FILE_MODE = 0o640
SECRET_KEYS = {
    "token": "METRONOME_BEARER_TOKEN",
    "bearer_token": "METRONOME_BEARER_TOKEN",
    "api_key": "METRONOME_BEARER_TOKEN",
    "bot_token": "SLACK_BOT_TOKEN",
    "webhook_url": "SLACK_WEBHOOK_URL",
    # The names the settings hold them under, and the variables' own names, in case
    # someone copies them into the file: refused, never silently dropped.
    "metronome_token": "METRONOME_BEARER_TOKEN",
    "metronome_bearer_token": "METRONOME_BEARER_TOKEN",
    "slack_bot_token": "SLACK_BOT_TOKEN",
    "slack_webhook_url": "SLACK_WEBHOOK_URL",
}
# Settings that only the environment sets; in the file they would be silently replaced.
ENVIRONMENT_ONLY_KEYS = {"slack_base_url": "LEAKWATCH_SLACK_BASE_URL"}


def _to_timedelta(value: Any) -> Any:
    if isinstance(value, str):
        return parse_duration(value)
    if isinstance(value, int | float) and not isinstance(value, bool):
        raise ValueError(f"{value!r} has no unit; write e.g. {value}s, {value}m or {value}h")
    return value


Duration = Annotated[
    timedelta,
    BeforeValidator(_to_timedelta),
    PlainSerializer(format_duration, return_type=str),
]


def _positive(value: timedelta) -> timedelta:
    if value <= timedelta(0):
        raise ValueError(f"{format_duration(value)} is too short; it must be longer than 0s")
    return value


# An interval or a window: zero would mean "always" (a busy loop) or "nothing".
PositiveDuration = Annotated[Duration, AfterValidator(_positive)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class MetronomeSettings(_Section):
    base_url: str = DEFAULT_METRONOME_URL
    requests_per_second: float = Field(default=1.0, gt=0, le=1000)
    max_ids_per_request: int = Field(default=100, ge=1, le=1000)
    timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    max_retries: int = Field(default=4, ge=0, le=20)
    # How long one cycle may spend on search, as a share of `checks.every`.
    cycle_budget_share: float = Field(default=0.8, gt=0, le=1)

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"{value!r} is not an http(s) URL")
        return value.rstrip("/")


StratifyBy = Literal["event_type", "customer_id", "event_type,customer_id"]


def _iana_zone(value: str) -> str:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{value!r} is not an IANA time zone, e.g. Europe/Berlin") from None
    return value


IanaZone = Annotated[str, AfterValidator(_iana_zone)]


class FieldMapping(_Section):
    """Dotted paths from a log line (or column names of a table) to the event fields."""

    transaction_id: str = "transaction_id"
    customer_id: str = "customer_id"
    event_type: str = "event_type"
    timestamp: str = "timestamp"
    properties: str = "properties"
    # Epoch timestamps: their unit, or "auto" to read it from the magnitude.
    timestamp_unit: Literal["auto", "s", "ms", "us", "ns"] = "auto"

    def paths(self) -> dict[str, str]:
        """The logical field → path/column mapping alone (without the unit)."""
        return self.model_dump(exclude={"timestamp_unit"})


class SourceSettings(_Section):
    name: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_.\-]+$")
    type: Literal["jsonl", "sql", "parquet"]
    path: str | None = None
    url: str | None = None
    table: str | None = None
    query: str | None = None
    fields: FieldMapping = FieldMapping()
    # The zone of naive timestamps ("2026-11-20 12:00:00"); without it they are bad lines.
    timezone: IanaZone | None = None
    # fsspec options for object storage paths (s3://, gs://, az://), e.g. endpoint_url.
    storage_options: dict[str, Any] = Field(default_factory=dict)
    settle_delay: Duration = timedelta(minutes=10)
    max_age: Duration = timedelta(days=33)
    # About 2,000 lookups an hour, spent as 2-minute cycles of 67: an alert decides
    # every 2 minutes for the same budget, which halves the lookups a batch's end
    # adds to a detection against 5-minute cycles of 167 (docs/detection.md).
    sample_size: int = Field(default=67, ge=1, le=100_000)
    stratify_by: StratifyBy | None = None
    stratum_floor: int = Field(default=5, ge=0, le=10_000)
    expected_metrics: dict[str, list[str]] = Field(default_factory=dict)
    max_line_bytes: int = Field(default=1 << 20, ge=256)
    seed: int | None = None

    @model_validator(mode="after")
    def _kind_fields(self) -> "SourceSettings":
        if self.type in ("jsonl", "parquet") and not self.path:
            raise ValueError(
                f"a {self.type} source needs `path` (a file, a glob or a directory, "
                "local or s3://…)"
            )
        if self.type == "sql":
            if not self.url:
                raise ValueError("a sql source needs `url` (an SQLAlchemy URL)")
            if bool(self.table) == bool(self.query):
                raise ValueError("a sql source needs exactly one of `table` or `query`")
        if self.max_age > MAX_SAMPLE_AGE:
            raise ValueError(
                f"max_age {format_duration(self.max_age)} is too old: Metronome searches "
                "only the last 34 days; use at most 33d"
            )
        if self.settle_delay >= self.max_age:
            raise ValueError("settle_delay must be shorter than max_age")
        return self


class ChecksSettings(_Section):
    every: PositiveDuration = timedelta(minutes=2)
    missing_grace: Duration = timedelta(hours=2)
    min_checks_before_missing: int = Field(default=2, ge=1, le=100)
    recheck_pending_every: PositiveDuration = timedelta(minutes=15)
    recheck_unmatched_customer_every: PositiveDuration = timedelta(hours=6)
    # Share of each cycle's search budget reserved for re-checks when both compete.
    recheck_share: float = Field(default=0.3, ge=0, le=1)
    # Share of each source's draw kept for follow-up probes of groups (event types,
    # customers) whose evidence is rising or whose alert fires; 0 turns probes off.
    probe_share: float = Field(default=0.15, ge=0, le=0.9)
    probe_per_group: int = Field(default=10, ge=1, le=10_000)
    # How long a cycle tails before it draws; a longer history is counted after the
    # lookups, over the next cycles, with volumes estimated from the draw meanwhile.
    tail_slice: Duration = timedelta(seconds=5)


class ReconcileSettings(_Section):
    """Totals reconciliation through `POST /v1/usage` (see `leakwatch reconcile`)."""

    every: PositiveDuration = timedelta(hours=24)  # how often the daemon reconciles
    days: int = Field(default=7, ge=1, le=33)  # complete UTC days compared each run
    settle: Duration = timedelta(days=3)  # a day older than this is final
    tolerance: float = Field(default=0.001, ge=0, le=1)  # |billed − expected| / expected
    # Pinned ingest alias → Metronome customer id (learned from search answers otherwise).
    aliases: dict[str, str] = Field(default_factory=dict)


RateName = Literal[
    "leak_rate",
    "missing_rate",
    "unmatched_customer_rate",
    "unmatched_metric_rate",
    "duplicate_rate",
    "mismatch_rate",
    "billed_gap",
]


class AlertRuleSettings(_Section):
    name: str = Field(min_length=1, max_length=200)
    rate: RateName = "leak_rate"
    threshold: float = Field(gt=0, lt=1)
    window: PositiveDuration = timedelta(hours=24)
    min_samples: int = Field(default=100, ge=1)
    confidence: float = Field(default=0.95, gt=0.5, lt=1)
    by: Literal["event_type", "customer_id", "source"] | None = None
    severity: Literal["warning", "critical"] = "warning"
    for_: Duration = Field(default=timedelta(0), validation_alias=AliasChoices("for", "for_"))
    repeat_interval: PositiveDuration = timedelta(hours=4)
    # sequential: an always-valid CUSUM per cycle (docs/detection.md); interval: the
    # Wilson bound of the window re-tested each cycle.
    decision: Literal["sequential", "interval"] = "sequential"

    @model_validator(mode="after")
    def _billed_gap_scope(self) -> "AlertRuleSettings":
        if self.rate == "billed_gap" and self.by not in (None, "customer_id"):
            raise ValueError(
                f"alert {self.name!r}: a billed_gap rule compares Metronome's totals per "
                f"customer, so `by` is customer_id or absent, not {self.by!r}"
            )
        return self


class HealthSettings(_Section):
    source_stale_after: PositiveDuration = timedelta(hours=1)
    api_error_rate: float = Field(default=0.2, gt=0, le=1)
    bad_line_rate: float = Field(default=0.01, gt=0, le=1)
    cycles_behind: int = Field(default=3, ge=1)


class SlackSettings(_Section):
    channel: str | None = None


class DaemonSettings(_Section):
    health_address: str = "127.0.0.1:9108"
    retention: PositiveDuration = timedelta(days=400)
    shutdown_timeout: Duration = timedelta(seconds=30)
    leader_lock_key: int = 0x6C65616B  # "leak"

    @field_validator("health_address")
    @classmethod
    def _host_port(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
            raise ValueError(f"{value!r} is not host:port, e.g. 127.0.0.1:9108")
        return value


# "mon 09:00", read by the one parser into the `WeeklyTime` the scheduler and the
# catch-up check use.
WeeklySetting = Annotated[WeeklyTime, PlainValidator(WeeklyTime.parse)]
# A number (per event) or { per_unit = 0.0004, property = "seconds" }, read by the one
# parser into the one `Price` type that status, alerts, the report and /metrics use.
PriceSetting = Annotated[Price, PlainValidator(parse_price)]


def _octal_mode(value: Any) -> Any:
    if isinstance(value, str):
        text = value.strip().lower().removeprefix("0o")
        if not text or any(c not in "01234567" for c in text):
            raise ValueError(f'{value!r} is not an octal file mode; write e.g. "0640"')
        value = int(text, 8)
    allowed = isinstance(value, int) and 0o400 <= value <= 0o777 and not value & 0o133
    if isinstance(value, int) and not isinstance(value, bool) and not allowed:
        raise ValueError(
            f"{value:#o} is not a report file mode: the owner must read it, and nobody "
            "may execute it or write it but the owner (e.g. 0640, 0600, 0644)"
        )
    return value


class ReportSettings(_Section):
    weekly: WeeklySetting = WeeklyTime(0, 9, 0)
    timezone: str = "UTC"
    out_dir: Path = Path("reports")
    prices: dict[str, PriceSetting] = Field(default_factory=dict)
    currency: str = "$"
    # Report files' mode: TOML 0o640 or "0640". Never writable by others.
    file_mode: Annotated[int, BeforeValidator(_octal_mode)] = DEFAULT_REPORT_FILE_MODE

    def quantity_properties(self) -> dict[str, str]:
        """Event type → the property whose value is priced per unit (from `prices`)."""
        return quantity_properties(self.prices)

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        return _iana_zone(value)


class Settings(_Section):
    """Everything leakwatch is told, after merging file and environment."""

    database_url: str = DEFAULT_DATABASE_URL
    state_dir: Path = Path(".leakwatch")
    metronome: MetronomeSettings = MetronomeSettings()
    sources: list[SourceSettings] = Field(default_factory=list)
    checks: ChecksSettings = ChecksSettings()
    alerts: list[AlertRuleSettings] = Field(default_factory=list)
    health: HealthSettings = HealthSettings()
    slack: SlackSettings = SlackSettings()
    daemon: DaemonSettings = DaemonSettings()
    report: ReportSettings = ReportSettings()
    reconcile: ReconcileSettings = ReconcileSettings()
    # Secrets: only from the environment, never printed (SecretStr).
    metronome_token: SecretStr | None = None
    slack_bot_token: SecretStr | None = None
    slack_webhook_url: SecretStr | None = None
    slack_base_url: str | None = None

    @model_validator(mode="after")
    def _unique_names(self) -> "Settings":
        for label, names in (
            ("sources", [s.name for s in self.sources]),
            ("alerts", [a.name for a in self.alerts]),
        ):
            seen: set[str] = set()
            for name in names:
                if name in seen:
                    raise ValueError(f"two {label} are named {name!r}; names must be unique")
                seen.add(name)
        return self

    def secret_values(self) -> list[str]:
        """Every secret these settings hold, for the log redactor.

        The tokens and the webhook, and the passwords inside the store's and the SQL
        sources' URLs (as written and decoded).
        """
        values = [
            secret.get_secret_value()
            for secret in (self.metronome_token, self.slack_bot_token, self.slack_webhook_url)
            if secret is not None
        ]
        values += url_passwords(self.database_url)
        for source in self.sources:
            values += url_passwords(source.url)
        return values

    def source(self, name: str) -> SourceSettings:
        for source in self.sources:
            if source.name == name:
                return source
        known = ", ".join(s.name for s in self.sources) or "none configured"
        raise UsageProblem(f"no source named {name!r}; configured: {known}")


class Environment(BaseModel):
    """The environment variables leakwatch reads, named as Metronome's and Slack's SDKs do.

    A plain model validated from the environment's mapping (`load_settings` passes
    `os.environ`): pydantic-settings' machinery added nothing here but ~0.13 s to every
    command's start.
    """

    model_config = ConfigDict(extra="ignore")

    metronome_bearer_token: SecretStr | None = Field(
        default=None, validation_alias="METRONOME_BEARER_TOKEN"
    )
    metronome_base_url: str | None = Field(default=None, validation_alias="METRONOME_BASE_URL")
    slack_bot_token: SecretStr | None = Field(default=None, validation_alias="SLACK_BOT_TOKEN")
    slack_webhook_url: SecretStr | None = Field(default=None, validation_alias="SLACK_WEBHOOK_URL")
    config_path: Path | None = Field(default=None, validation_alias="LEAKWATCH_CONFIG")
    database_url: str | None = Field(default=None, validation_alias="LEAKWATCH_DATABASE_URL")
    slack_base_url: str | None = Field(default=None, validation_alias="LEAKWATCH_SLACK_BASE_URL")
    health_address: str | None = Field(default=None, validation_alias="LEAKWATCH_HEALTH_ADDRESS")


def config_path(explicit: Path | None, environ: Mapping[str, str] | None = None) -> Path:
    """The config file to read: the --config flag, else LEAKWATCH_CONFIG, else ./leakwatch.toml."""
    if explicit is not None:
        return explicit
    env = os.environ if environ is None else environ
    return Path(env.get("LEAKWATCH_CONFIG") or DEFAULT_CONFIG_PATH)


def load_settings(
    path: Path | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    require_file: bool = False,
) -> Settings:
    """Read the TOML file (if present) and the environment into validated Settings."""
    env_values = dict(os.environ if environ is None else environ)
    env = Environment.model_validate(env_values)
    file_path = config_path(path, env_values)
    data: dict[str, Any] = {}
    if file_path.exists():
        try:
            data = tomllib.loads(file_path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError([f"{file_path}: not valid TOML: {exc}"]) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError([f"{file_path}: cannot read: {exc}"]) from None
    elif path is None and env_values.get("LEAKWATCH_CONFIG"):
        # A variable that names a file must name one that exists: a forgotten config
        # mount must not start leakwatch on defaults (a new ./leakwatch.db, no sources).
        raise ConfigError(
            [
                f"LEAKWATCH_CONFIG={file_path}: no such config file; fix the path or mount "
                "the file there (`leakwatch init` writes an example), or unset "
                "LEAKWATCH_CONFIG to use ./leakwatch.toml"
            ]
        )
    elif require_file or path is not None:
        raise ConfigError([f"{file_path}: no such config file; `leakwatch init` writes an example"])
    return settings_from_mapping(data, env, origin=str(file_path))


def settings_from_mapping(
    data: Mapping[str, Any], env: Environment | None = None, *, origin: str = "config"
) -> Settings:
    """Validate a parsed config mapping, with the environment laid over it."""
    env = env or Environment.model_validate({})
    problems = _secret_problems(data) + _file_base_url_problems(data, env)
    if problems:
        raise ConfigError([f"{origin}: {p}" for p in problems])
    merged: dict[str, Any] = {k: v for k, v in data.items()}
    if env.database_url:
        merged["database_url"] = env.database_url
    if env.metronome_base_url:
        merged["metronome"] = {
            **dict(merged.get("metronome") or {}),
            "base_url": env.metronome_base_url,
        }
    if env.health_address:
        merged["daemon"] = {
            **dict(merged.get("daemon") or {}),
            "health_address": env.health_address,
        }
    secrets = {
        "METRONOME_BEARER_TOKEN": env.metronome_bearer_token,
        "SLACK_BOT_TOKEN": env.slack_bot_token,
        "SLACK_WEBHOOK_URL": env.slack_webhook_url,
    }
    cleaned: dict[str, SecretStr | None] = {}
    problems = []
    for variable, secret in secrets.items():
        try:
            cleaned[variable] = _clean_secret(variable, secret)
        except ValueError as exc:
            problems.append(str(exc))
    if problems:
        raise ConfigError([f"environment: {p}" for p in problems])
    merged["metronome_token"] = cleaned["METRONOME_BEARER_TOKEN"]
    merged["slack_bot_token"] = cleaned["SLACK_BOT_TOKEN"]
    merged["slack_webhook_url"] = cleaned["SLACK_WEBHOOK_URL"]
    merged["slack_base_url"] = env.slack_base_url
    from_env: dict[tuple[str, ...], str] = {
        location: variable
        for location, variable, value in (
            (("database_url",), "LEAKWATCH_DATABASE_URL", env.database_url),
            (("metronome", "base_url"), "METRONOME_BASE_URL", env.metronome_base_url),
            (("daemon", "health_address"), "LEAKWATCH_HEALTH_ADDRESS", env.health_address),
        )
        if value
    }
    try:
        return Settings.model_validate(merged)
    except ValidationError as exc:
        raise ConfigError([_blame(err, origin, from_env) for err in exc.errors()]) from None


def _blame(error: Mapping[str, Any], origin: str, from_env: Mapping[tuple[str, ...], str]) -> str:
    """Say where a bad value came from: the variable that overrode the file, or the file."""
    location = tuple(str(part) for part in error.get("loc", ()))
    variable = from_env.get(location[:2]) or from_env.get(location[:1])
    if variable is not None:
        return f"environment: {variable}: {_describe(error).partition(': ')[2]}"
    return f"{origin}: {_describe(error)}"


def _clean_secret(variable: str, secret: SecretStr | None) -> SecretStr | None:
    """Strip the newline a secret file or `echo` leaves; refuse what no header can carry.

    A token with a stray newline would fail every request as a "connection error";
    the message names the variable, never the value.
    """
    if secret is None:
        return None
    value = secret.get_secret_value().strip()
    if not value:
        return None
    if not value.isascii() or not value.isprintable() or any(c.isspace() for c in value):
        raise ValueError(
            f"{variable} contains spaces, control or non-ASCII characters (value not shown); "
            "set it to the token alone"
        )
    if variable == "SLACK_WEBHOOK_URL" and not _is_https_or_loopback(value):
        raise ValueError(
            "SLACK_WEBHOOK_URL is not an https:// URL (value not shown); set it to the "
            "incoming-webhook URL Slack gave you, https://hooks.slack.com/services/…"
        )
    return SecretStr(value)


def _is_https_or_loopback(url: str) -> bool:
    """An https URL, or plain http to this machine (a local test server)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        return False
    if parts.scheme == "https" and host:
        return True
    return parts.scheme == "http" and is_loopback_host(host)


def url_passwords(url: str | None) -> list[str]:
    """The password in a URL, as written (percent-encoded) and decoded; [] when none."""
    try:
        password = urlsplit(url).password if url else None
    except ValueError:
        return []
    return [password, unquote(password)] if password else []


def environment_secrets(environ: Mapping[str, str]) -> list[str]:
    """Every secret the environment holds, raw, for redaction before Settings exist.

    A command that fails while loading its settings must still not print them.
    """
    values = [
        environ.get(name, "").strip()
        for name in ("METRONOME_BEARER_TOKEN", "SLACK_BOT_TOKEN", "SLACK_WEBHOOK_URL")
    ]
    values += url_passwords(environ.get("LEAKWATCH_DATABASE_URL"))
    return [v for v in values if v]


def is_loopback_host(host: str | None) -> bool:
    """Whether `host` names this machine (`localhost`, 127.0.0.0/8, ::1)."""
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _file_base_url_problems(data: Mapping[str, Any], env: Environment) -> list[str]:
    """Refuse a config-file `metronome.base_url` that would carry the token in clear text.

    The file holds no secrets, so it must not be able to send one anywhere it could be
    read: it may name https URLs, and plain http only on loopback (the simulator).
    `METRONOME_BASE_URL` from the environment, set by whoever holds the token, may
    name any http(s) URL.
    """
    section = data.get("metronome")
    if env.metronome_base_url or not isinstance(section, Mapping):
        return []
    value = section.get("base_url")
    if not isinstance(value, str) or not value.startswith("http://"):
        return []
    if is_loopback_host(urlsplit(value).hostname):
        return []
    return [
        f"metronome.base_url: {value!r} would send the Metronome token unencrypted; "
        "the config file may name only https URLs (plain http only on loopback) — "
        "use https, or set METRONOME_BASE_URL in the environment"
    ]


def _secret_problems(data: Mapping[str, Any], prefix: str = "") -> list[str]:
    problems = []
    for key, value in data.items():
        where = f"{prefix}{key}"
        if key in SECRET_KEYS:
            problems.append(
                f"{where}: secrets are never read from the config file; "
                f"remove it and set the environment variable {SECRET_KEYS[key]}"
            )
        elif not prefix and key in ENVIRONMENT_ONLY_KEYS:
            problems.append(
                f"{where}: set only from the environment; remove it and set "
                f"{ENVIRONMENT_ONLY_KEYS[key]}"
            )
        elif isinstance(value, Mapping):
            problems.extend(_secret_problems(value, f"{where}."))
    return problems


def _nearest_key(location: tuple[Any, ...]) -> str | None:
    """The valid key closest to an unknown one, found by walking the models along `loc`."""
    model: Any = Settings
    for part in location[:-1]:
        if isinstance(part, int) or not isinstance(model, type):
            continue
        field = getattr(model, "model_fields", {}).get(part)
        if field is None:
            return None
        annotation = field.annotation
        for candidate in (annotation, *typing.get_args(annotation)):
            inner = typing.get_args(candidate) or (candidate,)
            found = next(
                (c for c in inner if isinstance(c, type) and issubclass(c, BaseModel)), None
            )
            if found is not None:
                model = found
                break
        else:
            return None
    names: list[str] = []
    for name, field in getattr(model, "model_fields", {}).items():
        names.append(name)
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            names.extend(str(a) for a in alias.choices)
    matches = difflib.get_close_matches(str(location[-1]), names, n=1, cutoff=0.6)
    return matches[0] if matches else None


def _describe(error: Mapping[str, Any]) -> str:
    location = ""
    for part in error.get("loc", ()):
        if isinstance(part, int):
            location += f"[{part}]"
        elif part in ("function-after[_kind_fields(), SourceSettings]",):
            continue
        else:
            location += f".{part}" if location else str(part)
    message = str(error.get("msg", "invalid"))
    message = message.removeprefix("Value error, ")
    if error.get("type") == "extra_forbidden":
        nearest = _nearest_key(tuple(error.get("loc", ())))
        hint = f"did you mean {nearest!r}?" if nearest else "a typo?"
        message = f"unknown key ({hint} see `leakwatch init` for every key)"
    value = error.get("input")
    shown = "" if isinstance(value, Mapping | list) or value is None else f" (got {value!r})"
    return f"{location or '(top level)'}: {message}{shown}"
