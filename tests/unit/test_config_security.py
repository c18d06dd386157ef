"""Config the file may not say: where the bearer token goes, and secrets in any form."""

import pytest
from structlog.testing import capture_logs

from leakwatch.clock import FakeClock
from leakwatch.config import Environment, settings_from_mapping
from leakwatch.errors import ConfigError
from leakwatch.wiring import build_search_client

EVIL = "http://evil.example:8080"


def _metronome(base_url: str, **env: str) -> str:
    settings = settings_from_mapping(
        {"metronome": {"base_url": base_url}}, Environment.model_validate(env)
    )
    return settings.metronome.base_url


def test_a_config_file_cannot_send_the_token_over_plain_http() -> None:
    with pytest.raises(ConfigError) as caught:
        _metronome(EVIL, METRONOME_BEARER_TOKEN="tok-123456789")
    (problem,) = caught.value.problems
    assert "metronome.base_url" in problem
    assert "METRONOME_BASE_URL" in problem
    assert "tok-123456789" not in problem


@pytest.mark.parametrize(
    "url",
    [
        "https://api.metronome.com",
        "https://proxy.internal:8443/metronome",
        "http://127.0.0.1:8787",
        "http://localhost:8787",
        "http://[::1]:8787",
        "http://127.0.0.2",
    ],
)
def test_the_file_may_name_https_anywhere_and_http_on_loopback(url: str) -> None:
    assert _metronome(url) == url


def test_the_environment_may_name_plain_http() -> None:
    assert _metronome(EVIL, METRONOME_BASE_URL="http://sim.internal:8787") == (
        "http://sim.internal:8787"
    )
    # The environment's URL wins, so the file's is not used and not refused.
    assert _metronome("https://api.metronome.com", METRONOME_BASE_URL=EVIL) == EVIL


def test_the_effective_metronome_host_is_logged_when_the_client_is_built() -> None:
    settings = settings_from_mapping(
        {"metronome": {"base_url": "https://api.metronome.com/"}},
        Environment.model_validate({"METRONOME_BEARER_TOKEN": "tok-123456789"}),
    )
    with capture_logs() as logs:
        build_search_client(settings, FakeClock()).close()
    (entry,) = [e for e in logs if e["event"] == "metronome.endpoint"]
    assert entry["metronome_host"] == "api.metronome.com"
    assert entry["metronome_scheme"] == "https"
