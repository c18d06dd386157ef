"""Config: file + environment, durations, and errors that name the key and the fix."""

import tomllib
from datetime import timedelta
from importlib import resources
from pathlib import Path

import pytest

from leakwatch.config import Environment, load_settings, settings_from_mapping
from leakwatch.core.durations import format_duration, parse_duration
from leakwatch.errors import ConfigError


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", timedelta(seconds=90)),
        ("15m", timedelta(minutes=15)),
        ("2h", timedelta(hours=2)),
        ("33d", timedelta(days=33)),
        ("1h30m", timedelta(minutes=90)),
        ("1w", timedelta(days=7)),
        ("250ms", timedelta(milliseconds=250)),
        (" 2H ", timedelta(hours=2)),
    ],
)
def test_durations_parse(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "15", "15x", "h", "1h 30", "-5m", "1.5.2h"])
def test_bad_durations_say_what_is_allowed(text: str) -> None:
    with pytest.raises(ValueError, match=r"write e\.g\. 90s, 15m"):
        parse_duration(text)


@pytest.mark.parametrize("seconds", [0, 1, 90, 3600, 86400 * 33 + 61])
def test_format_duration_round_trips(seconds: int) -> None:
    value = timedelta(seconds=seconds)
    assert parse_duration(format_duration(value)) == value


def test_the_init_template_loads_as_it_is() -> None:
    text = resources.files("leakwatch").joinpath("templates/leakwatch.toml").read_text()
    settings = settings_from_mapping(tomllib.loads(text))
    assert settings.sources[0].name == "gateway"
    assert settings.checks.every == timedelta(minutes=2)
    assert settings.alerts[0].threshold == 0.01


def _problems(data: dict[str, object]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        settings_from_mapping(data)
    return caught.value.problems


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ({"checks": {"every": "15x"}}, "checks.every: '15x' is not a duration"),
        ({"checks": {"every": 15}}, "checks.every: 15 has no unit"),
        ({"metronome": {"requests_per_second": 0}}, "metronome.requests_per_second"),
        ({"metronome": {"base_url": "ftp://x"}}, "not an http(s) URL"),
        ({"sources": [{"name": "g", "type": "jsonl"}]}, "needs `path`"),
        ({"sources": [{"name": "g", "type": "csv", "path": "x"}]}, "sources[0].type"),
        (
            {"sources": [{"name": "g", "type": "jsonl", "path": "x", "max_age": "40d"}]},
            "use at most 33d",
        ),
        ({"sources": [{"name": "w", "type": "sql", "url": "sqlite://"}]}, "`table` or `query`"),
        ({"alerts": [{"name": "a", "threshold": 1.5}]}, "alerts[0].threshold"),
        ({"alerts": [{"name": "a", "threshold": 0.1, "by": "region"}]}, "alerts[0].by"),
        ({"report": {"timezone": "Mars/Olympus"}}, "not an IANA time zone"),
        ({"report": {"weekly": "someday"}}, "write e.g. 'mon 09:00'"),
        ({"daemon": {"health_address": "9108"}}, "is not host:port"),
        ({"chekcs": {}}, "chekcs: unknown key (did you mean 'checks'?"),
        ({"checks": {"evry": "15m"}}, "checks.evry: unknown key (did you mean 'every'?"),
        (
            {"sources": [{"name": "g", "type": "jsonl", "path": "x", "smaple_size": 5}]},
            "sources[0].smaple_size: unknown key (did you mean 'sample_size'?",
        ),
        ({"zzzz": 1}, "zzzz: unknown key (a typo?"),
        (
            {"alerts": [{"name": "a", "threshold": 0.1}, {"name": "a", "threshold": 0.2}]},
            "two alerts are named 'a'",
        ),
    ],
)
def test_bad_config_names_the_key_and_the_fix(data: dict[str, object], fragment: str) -> None:
    problems = _problems(data)
    assert any(fragment in p for p in problems), problems


@pytest.mark.parametrize(
    ("data", "variable"),
    [
        ({"metronome": {"token": "abc"}}, "METRONOME_BEARER_TOKEN"),
        ({"slack": {"webhook_url": "https://hooks.slack.com/x"}}, "SLACK_WEBHOOK_URL"),
        ({"slack": {"bot_token": "xoxb-1"}}, "SLACK_BOT_TOKEN"),
    ],
)
def test_secrets_are_refused_in_the_file(data: dict[str, object], variable: str) -> None:
    problems = _problems(data)
    assert any(variable in p and "never read from the config file" in p for p in problems)
    assert not any("abc" in p or "xoxb-1" in p for p in problems)


def test_the_environment_wins_over_the_file(tmp_path: Path) -> None:
    path = tmp_path / "leakwatch.toml"
    path.write_text(
        'database_url = "sqlite:///file.db"\n[metronome]\nbase_url = "https://file.example"\n'
    )
    env = {
        "LEAKWATCH_CONFIG": str(path),
        "LEAKWATCH_DATABASE_URL": "sqlite:///env.db",
        "METRONOME_BASE_URL": "http://127.0.0.1:9/",
        "METRONOME_BEARER_TOKEN": "tok-123456",
        "LEAKWATCH_HEALTH_ADDRESS": "127.0.0.1:9999",
    }
    settings = load_settings(environ=env)
    assert settings.database_url == "sqlite:///env.db"
    assert settings.metronome.base_url == "http://127.0.0.1:9"
    assert settings.daemon.health_address == "127.0.0.1:9999"
    assert settings.metronome_token is not None
    assert settings.metronome_token.get_secret_value() == "tok-123456"
    assert "tok-123456" not in repr(settings)


def test_no_file_means_defaults_unless_one_was_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    settings = load_settings(environ={})
    assert settings.database_url == "sqlite:///leakwatch.db"
    with pytest.raises(ConfigError, match="leakwatch init"):
        load_settings(tmp_path / "absent.toml", environ={})


def test_leakwatch_config_naming_a_missing_file_is_an_error(tmp_path: Path) -> None:
    """A forgotten config mount must fail at start, not run on defaults."""
    missing = tmp_path / "etc" / "leakwatch.toml"
    with pytest.raises(ConfigError, match="LEAKWATCH_CONFIG") as caught:
        load_settings(environ={"LEAKWATCH_CONFIG": str(missing)})
    assert str(missing) in str(caught.value)


def test_invalid_toml_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[checks\nevery = 1")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(path, environ={})


def test_environment_reads_only_its_own_names() -> None:
    env = Environment.model_validate({"SLACK_BOT_TOKEN": "xoxb-abc", "UNRELATED": "1"})
    assert env.slack_bot_token is not None
    assert env.slack_bot_token.get_secret_value() == "xoxb-abc"


def test_timestamp_shape_settings_are_checked() -> None:
    from leakwatch.config import settings_from_mapping
    from leakwatch.errors import ConfigError

    base = {"name": "gw", "type": "jsonl", "path": "/var/log/x.jsonl"}
    ok = settings_from_mapping(
        {"sources": [{**base, "timezone": "Europe/Berlin", "fields": {"timestamp_unit": "ms"}}]}
    )
    assert ok.sources[0].fields.timestamp_unit == "ms"
    assert "timestamp_unit" not in ok.sources[0].fields.paths()
    with pytest.raises(ConfigError, match="not an IANA time zone"):
        settings_from_mapping({"sources": [{**base, "timezone": "Mars/Olympus"}]})
    with pytest.raises(ConfigError, match="timestamp_unit"):
        settings_from_mapping({"sources": [{**base, "fields": {"timestamp_unit": "weeks"}}]})


def test_a_bad_value_from_the_environment_is_blamed_on_its_variable() -> None:
    env = Environment.model_validate({"LEAKWATCH_HEALTH_ADDRESS": "nonsense"})
    with pytest.raises(ConfigError) as raised:
        settings_from_mapping({"daemon": {"health_address": "127.0.0.1:1"}}, env, origin="x.toml")
    (problem,) = raised.value.problems
    assert problem.startswith("environment: LEAKWATCH_HEALTH_ADDRESS: ")
    assert "x.toml" not in problem
