"""Config mistakes that used to pass silently: secrets under their env-like names, zero spans."""

import pytest

from leakwatch.config import Environment, settings_from_mapping
from leakwatch.errors import ConfigError


def _problems(data: dict[str, object]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        settings_from_mapping(data)
    return caught.value.problems


@pytest.mark.parametrize(
    ("data", "variable"),
    [
        ({"slack_webhook_url": "https://hooks.slack.com/services/T/B/x"}, "SLACK_WEBHOOK_URL"),
        ({"slack_bot_token": "xoxb-1"}, "SLACK_BOT_TOKEN"),
        ({"metronome_token": "abc"}, "METRONOME_BEARER_TOKEN"),
        ({"metronome_bearer_token": "abc"}, "METRONOME_BEARER_TOKEN"),
        ({"metronome": {"metronome_bearer_token": "abc"}}, "METRONOME_BEARER_TOKEN"),
    ],
)
def test_a_secret_under_its_own_name_is_refused_not_dropped(
    data: dict[str, object], variable: str
) -> None:
    problems = _problems(data)
    assert any(variable in p and "never read from the config file" in p for p in problems)
    assert not any("abc" in p or "xoxb-1" in p or "hooks.slack" in p for p in problems)


def test_the_slack_test_url_is_refused_in_the_file() -> None:
    problems = _problems({"slack_base_url": "http://127.0.0.1:1"})
    assert any("LEAKWATCH_SLACK_BASE_URL" in p for p in problems), problems


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"checks": {"every": "0s"}}, "checks.every"),
        ({"checks": {"recheck_pending_every": "0m"}}, "checks.recheck_pending_every"),
        (
            {"checks": {"recheck_unmatched_customer_every": "0h"}},
            "checks.recheck_unmatched_customer_every",
        ),
        ({"alerts": [{"name": "a", "threshold": 0.1, "window": "0h"}]}, "alerts[0].window"),
        (
            {"alerts": [{"name": "a", "threshold": 0.1, "repeat_interval": "0s"}]},
            "alerts[0].repeat_interval",
        ),
        ({"daemon": {"retention": "0d"}}, "daemon.retention"),
        ({"health": {"source_stale_after": "0m"}}, "health.source_stale_after"),
    ],
)
def test_a_zero_interval_or_window_is_refused(data: dict[str, object], key: str) -> None:
    problems = _problems(data)
    assert any(p.startswith(f"config: {key}: ") and "longer than 0s" in p for p in problems), (
        problems
    )


@pytest.mark.parametrize(
    "data",
    [
        {"checks": {"missing_grace": "0s"}},
        {"sources": [{"name": "g", "type": "jsonl", "path": "x", "settle_delay": "0s"}]},
        {"alerts": [{"name": "a", "threshold": 0.1, "for": "0s"}]},
    ],
)
def test_zero_stays_allowed_where_it_means_no_delay(data: dict[str, object]) -> None:
    settings_from_mapping(data)


def test_a_secret_with_a_trailing_newline_is_stripped() -> None:
    env = Environment.model_validate(
        {"METRONOME_BEARER_TOKEN": "tok-123456\n", "SLACK_BOT_TOKEN": "  xoxb-1-2 "}
    )
    settings = settings_from_mapping({}, env)
    assert settings.metronome_token is not None
    assert settings.metronome_token.get_secret_value() == "tok-123456"
    assert settings.slack_bot_token is not None
    assert settings.slack_bot_token.get_secret_value() == "xoxb-1-2"


@pytest.mark.parametrize("token", ["tok 123456", "tok\n123456", "tokén123456"])
def test_a_secret_no_header_can_carry_is_refused_without_showing_it(token: str) -> None:
    env = Environment.model_validate({"METRONOME_BEARER_TOKEN": token})
    with pytest.raises(ConfigError) as caught:
        settings_from_mapping({}, env)
    (problem,) = caught.value.problems
    assert "METRONOME_BEARER_TOKEN" in problem
    assert "123456" not in problem
