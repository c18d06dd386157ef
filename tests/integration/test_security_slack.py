"""Mention and link syntax in a log reaches Slack inert: alerts and the weekly report.

A source log whose customer ids and event types carry `<!channel>`, `<@U0EVIL>`,
`<https://evil.example|Reset billing>`, backticks and newlines; `leakwatch check`
fires alerts scoped by customer and by event type, `leakwatch report --send` posts the
week (bot token, then webhook). Every payload the fake Slack received is inspected,
field by field.
"""

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from leakwatch.clock import SystemClock
from leakwatch.core.events import format_timestamp
from leakwatch.core.weeks import IsoWeek
from leakwatch.simulator import SimulatorServer, build_demo_state
from tests.fakes.fake_slack_files import FakeSlackWithFiles
from tests.support.cli import leakwatch

TOKEN = "sec-test-token-123456"
EVIL_CUSTOMER = "<!channel> <@U0EVIL> <https://evil.example|Reset billing>"
EVIL_TYPE = "api`x`\n*bold* <!here> <#C0GENERAL>"
FORBIDDEN = ("<!", "<@", "<#", "<http", "api`x`", "\n*bold*")


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        # Form-encoded bodies carry blocks as a JSON string: look inside it too.
        if value.startswith(("[", "{")):
            try:
                yield from _strings(json.loads(value))
                return
            except ValueError:
                pass
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _mrkdwn_objects(value: Any) -> Iterator[dict[str, Any]]:
    if isinstance(value, str) and value.startswith(("[", "{")):
        try:
            value = json.loads(value)
        except ValueError:
            return
    if isinstance(value, dict):
        if value.get("type") == "mrkdwn":
            yield value
        for item in value.values():
            yield from _mrkdwn_objects(item)
    elif isinstance(value, list):
        for item in value:
            yield from _mrkdwn_objects(item)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[Path, dict[str, str], FakeSlackWithFiles, str]]:
    clock = SystemClock()
    when = clock.now() - timedelta(hours=3)
    log = tmp_path / "usage.jsonl"
    lines = []
    for i in range(40):
        hostile = i % 4 != 0
        lines.append(
            json.dumps(
                {
                    "transaction_id": f"txn-{i}" if i % 5 else f"txn-<!everyone>-`{i}`\n",
                    "customer_id": EVIL_CUSTOMER if hostile else "acme",
                    "event_type": EVIL_TYPE if hostile else "api_request",
                    "timestamp": format_timestamp(when + timedelta(seconds=i)),
                    "properties": {},
                }
            )
        )
    log.write_text("\n".join(lines) + "\n", encoding="utf-8")
    (tmp_path / "leakwatch.toml").write_text(
        f"""
state_dir = "{tmp_path / "state"}"
[metronome]
requests_per_second = 50
[[sources]]
name = "gateway"
type = "jsonl"
path = "{log}"
sample_size = 100
settle_delay = "1m"
[checks]
missing_grace = "1h"
min_checks_before_missing = 1
[[alerts]]
name = "by customer"
threshold = 0.01
min_samples = 5
by = "customer_id"
[[alerts]]
name = "by type"
threshold = 0.01
min_samples = 5
by = "event_type"
[slack]
channel = "#billing-alerts"
[report]
out_dir = "{tmp_path / "reports"}"
"""
    )
    # Nothing was ingested: every sampled event is missing.
    with (
        SimulatorServer(build_demo_state(clock=clock), token=TOKEN) as server,
        FakeSlackWithFiles() as slack,
    ):
        env = {
            "METRONOME_BEARER_TOKEN": TOKEN,
            "METRONOME_BASE_URL": server.base_url,
            "LEAKWATCH_DATABASE_URL": f"sqlite:///{tmp_path / 'leakwatch.db'}",
            "SLACK_BOT_TOKEN": slack.state.token,
            "LEAKWATCH_SLACK_BASE_URL": slack.base_url,
        }
        yield tmp_path, env, slack, str(IsoWeek.containing(when, ZoneInfo("UTC")))


def _run(cwd: Path, env: dict[str, str], *args: str) -> None:
    result = leakwatch(*args, cwd=cwd, env=env)
    assert result.returncode == 0, result.stdout + result.stderr


def test_log_derived_mentions_and_links_reach_slack_inert(
    world: tuple[Path, dict[str, str], FakeSlackWithFiles, str],
) -> None:
    cwd, env, slack, week = world
    _run(cwd, env, "check")
    _run(cwd, env, "report", "--week", week, "--send")
    webhook_env = {k: v for k, v in env.items() if k != "SLACK_BOT_TOKEN"}
    webhook_env["SLACK_WEBHOOK_URL"] = slack.webhook_url
    _run(cwd, webhook_env, "report", "--week", week, "--send", "--force")

    with slack.lock:
        payloads = list(slack.state.payloads)
    posts = [p for path, p in payloads if path.endswith(("chat.postMessage", "chat.update"))]
    hooks = [p for path, p in payloads if "/services/" in path]
    assert len(posts) >= 3, "two alerts and the report should have been posted"
    assert len(hooks) == 1
    texts = [s for _, p in payloads for s in _strings(p)]
    # The hostile values were shown (escaped), not dropped …
    assert any("&lt;!channel&gt;" in s for s in texts)
    assert any("Reset billing" in s for s in texts)
    report_texts = list(_strings(hooks[0]))
    assert any("&lt;!channel&gt;" in s for s in report_texts), report_texts
    assert any("*bold* &lt;!here&gt;" in s for s in report_texts), report_texts
    # … and nothing Slack would act on, nor a broken line or code span, came through.
    for text in texts:
        for forbidden in FORBIDDEN:
            assert forbidden not in text, (forbidden, text)
    objects = [o for _, p in payloads for o in _mrkdwn_objects(p)]
    assert objects
    assert all(o.get("verbatim") is True for o in objects), objects
