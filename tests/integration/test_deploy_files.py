"""The deploy files work as shipped: every metric they name is one leakwatch exports,
the rules are valid Prometheus rules, the manifests and the unit point at the image's
real ports, paths, commands and variables, and the config they ship loads.

Metric names come from a real scrape: the daemon's `/metrics` served by `HealthServer`
on loopback, parsed as Prometheus parses it.
"""

import configparser
import json
import re
import shutil
import subprocess
import tomllib
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from leakwatch.clock import FakeClock
from leakwatch.config import Environment, settings_from_mapping
from leakwatch.daemon.health import DaemonStatus, HealthServer
from leakwatch.daemon.metrics import DaemonMetrics

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
DASHBOARD = DEPLOY / "grafana" / "leakwatch-dashboard.json"
RULES = DEPLOY / "prometheus" / "leakwatch-rules.yml"
UNIT = DEPLOY / "systemd" / "leakwatch.service"
K8S = DEPLOY / "kubernetes"
DOCKERFILE = ROOT / "Dockerfile"

# Names PromQL provides itself, not leakwatch.
PROMETHEUS_OWN = {"up"}
SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "gauge": ("",),
    "summary": ("", "_sum", "_count", "_created"),
    "info": ("_info",),
}


@pytest.fixture(scope="module")
def exported_series() -> set[str]:
    """Every series name a scrape of a running leakwatch can show."""
    clock = FakeClock(datetime(2026, 12, 1, 12, 0, tzinfo=UTC))
    metrics = DaemonMetrics()
    server = HealthServer(
        "127.0.0.1:0",
        status=DaemonStatus(clock),
        registry=metrics.registry,
        clock=clock,
        stale_after=timedelta(minutes=45),
    ).start()
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=10) as r:
            text = r.read().decode()
    finally:
        server.stop()
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        names.update(family.name + suffix for suffix in SUFFIXES.get(family.type, ("",)))
        names.update(sample.name for sample in family.samples)
    return names


def _promql_metric_names(expr: str) -> set[str]:
    without_strings = re.sub(r'"[^"]*"', '""', expr)
    without_ranges = re.sub(r"\[[^\]]*\]", "", without_strings)
    return set(re.findall(r"\b(leakwatch_[a-z0-9_]+|up)\b", without_ranges))


def _dashboard_exprs() -> Iterator[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            yield target["expr"]


def _rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(RULES.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def _k8s_docs() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in sorted(K8S.glob("*.yaml")):
        docs.extend(doc for doc in yaml.safe_load_all(path.read_text()) if doc)
    return docs


def _dockerfile_env() -> dict[str, str]:
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    env: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("ENV "):
            env.update(dict(re.findall(r"(\w+)=(\S+)", line)))
    return env


def test_every_metric_the_dashboard_names_is_exported(exported_series: set[str]) -> None:
    named = set().union(*(_promql_metric_names(e) for e in _dashboard_exprs()))
    assert named, "the dashboard queries no metric"
    assert named - PROMETHEUS_OWN <= exported_series, sorted(named - exported_series)


def test_the_dashboard_covers_what_an_operator_watches() -> None:
    named = set().union(*(_promql_metric_names(e) for e in _dashboard_exprs()))
    for needed in (
        "leakwatch_leak_rate",
        "leakwatch_search_calls_total",
        "leakwatch_search_rate_limited_total",
        "leakwatch_cycle_duration_seconds_bucket",
        "leakwatch_last_successful_cycle_timestamp_seconds",
        "leakwatch_outbox_backlog",
        "leakwatch_leader",
    ):
        assert needed in named


def test_every_metric_the_alerting_rules_name_is_exported(exported_series: set[str]) -> None:
    named = set().union(*(_promql_metric_names(rule["expr"]) for rule in _rules()))
    assert named - PROMETHEUS_OWN <= exported_series, sorted(named - exported_series)


def test_the_rules_cover_down_behind_and_metronome_unreachable() -> None:
    alerts = {rule["alert"] for rule in _rules()}
    assert {"LeakwatchDown", "LeakwatchCyclesBehind", "LeakwatchMetronomeUnreachable"} <= alerts


def test_the_rules_file_is_valid_prometheus_rules(tmp_path: Path) -> None:
    """`promtool check rules` where promtool is installed; a schema check always."""
    doc = yaml.safe_load(RULES.read_text())
    assert set(doc) == {"groups"}
    for group in doc["groups"]:
        assert set(group) <= {"name", "interval", "rules", "limit"} and group["name"]
        for rule in group["rules"]:
            assert set(rule) <= {"alert", "expr", "for", "labels", "annotations", "keep_firing_for"}
            assert rule["alert"].isidentifier() and rule["expr"].strip()
            assert rule["labels"]["severity"] in {"warning", "critical"}
            assert {"summary", "description"} <= set(rule["annotations"])
            if "for" in rule:
                assert re.fullmatch(r"\d+[smhd]", rule["for"])
            assert rule["expr"].count("(") == rule["expr"].count(")")
    promtool = shutil.which("promtool") or _ci_promtool()
    if promtool is None:
        return
    result = subprocess.run(
        [promtool, "check", "rules", str(RULES)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _ci_promtool() -> str | None:
    candidate = ROOT / ".ci" / "tools" / "usr" / "bin" / "promtool"
    return str(candidate) if candidate.exists() else None


def test_the_manifests_use_the_images_port_paths_and_variables() -> None:
    docs = {doc["kind"]: doc for doc in _k8s_docs()}
    assert {"Deployment", "ConfigMap", "Secret", "Service"} <= set(docs)
    deployment = docs["Deployment"]
    assert deployment["spec"]["replicas"] == 2
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["command"] == ["leakwatch", "run"]
    env = {item["name"]: item["value"] for item in container["env"]}
    image_env = _dockerfile_env()
    assert env["LEAKWATCH_CONFIG"] == image_env["LEAKWATCH_CONFIG"]
    exposed = int(re.findall(r"^EXPOSE (\d+)", DOCKERFILE.read_text(), re.MULTILINE)[0])
    port = container["ports"][0]
    assert port["containerPort"] == exposed
    assert env["LEAKWATCH_HEALTH_ADDRESS"].endswith(f":{exposed}")
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["path"] == "/healthz"
        assert container[probe]["httpGet"]["port"] in (port["name"], exposed)
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounts["config"] == str(Path(env["LEAKWATCH_CONFIG"]).parent)
    assert pod["securityContext"]["runAsUser"] == int(
        re.findall(r"--uid (\d+)", DOCKERFILE.read_text())[0]
    )
    # The container stops between search calls; the grace period covers shutdown_timeout.
    assert pod["terminationGracePeriodSeconds"] > 30
    secret_vars = set(docs["Secret"]["stringData"])
    assert secret_vars <= {
        "METRONOME_BEARER_TOKEN",
        "METRONOME_BASE_URL",
        "SLACK_BOT_TOKEN",
        "SLACK_WEBHOOK_URL",
        "LEAKWATCH_DATABASE_URL",
    }
    assert all(
        ref["secretRef"]["name"] == docs["Secret"]["metadata"]["name"]
        for ref in container["envFrom"]
    )
    service = docs["Service"]
    assert service["spec"]["ports"][0]["targetPort"] in (port["name"], exposed)
    assert service["metadata"]["annotations"]["prometheus.io/port"] == str(exposed)


def test_the_shipped_config_map_loads_as_leakwatch_config() -> None:
    config_map = next(doc for doc in _k8s_docs() if doc["kind"] == "ConfigMap")
    data = tomllib.loads(config_map["data"]["leakwatch.toml"])
    env = {"LEAKWATCH_DATABASE_URL": "postgresql+psycopg://leakwatch@db/leakwatch"}
    settings = settings_from_mapping(data, Environment.model_validate(env), origin="configmap")
    assert settings.sources and settings.alerts


def test_the_systemd_unit_runs_the_daemon_with_secrets_from_an_environment_file() -> None:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read_string(UNIT.read_text())
    service = unit["Service"]
    assert service["ExecStart"].split()[1:] == ["run"]
    assert service["ExecStartPre"].split()[1:] == ["db", "upgrade"]
    assert service["ExecStart"].split()[0].endswith("/leakwatch")
    assert service["EnvironmentFile"].endswith(".env")
    assert service["UMask"] == "0077"
    assert int(service["TimeoutStopSec"]) > 30
    assert unit["Install"]["WantedBy"] == "multi-user.target"
    example = (DEPLOY / "systemd" / "leakwatch.env.example").read_text()
    assert "METRONOME_BEARER_TOKEN=" in example


def _dockerfile_instructions() -> list[tuple[str, str]]:
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    pairs = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            keyword, _, rest = stripped.partition(" ")
            pairs.append((keyword.upper(), rest.strip()))
    return pairs


def test_everything_the_dockerfile_copies_exists_and_deps_come_first() -> None:
    instructions = _dockerfile_instructions()
    copies = [rest for keyword, rest in instructions if keyword == "COPY"]
    for copy in copies:
        if copy.startswith("--from"):
            continue
        *sources, _target = copy.split()
        for source in sources:
            assert (ROOT / source).exists(), f"Dockerfile copies {source}, which is missing"
    order = [rest.split()[0] for keyword, rest in instructions if keyword == "COPY"]
    # Dependencies are installed before the code is copied: their layer survives edits.
    assert order.index("pyproject.toml") < order.index("leakwatch")
    runs = [rest for keyword, rest in instructions if keyword == "RUN"]
    assert any("-c constraints.txt -r requirements.txt" in run for run in runs)
    assert any(keyword == "VOLUME" for keyword, _ in instructions)
    healthcheck = next(rest for keyword, rest in instructions if keyword == "HEALTHCHECK")
    assert "leakwatch.daemon.healthcheck" in healthcheck


def test_the_wheel_holds_what_the_image_runs(tmp_path: Path) -> None:
    import sys
    import zipfile

    # Built as pip builds it for the image: in isolation, with pyproject's build backend.
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(ROOT)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = tmp_path.glob("leakwatch-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in (
        "leakwatch/daemon/healthcheck.py",
        "leakwatch/cli.py",
        "leakwatch/migrations/env.py",
        "leakwatch/templates/leakwatch.toml",
    ):
        assert needed in names, needed
    assert any(n.startswith("leakwatch/migrations/versions/0001") for n in names)
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "leakwatch = leakwatch.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


@pytest.mark.parametrize("where", ["environment", "config file"])
def test_the_container_healthcheck_probes_the_configured_address(
    where: str, tmp_path: Path
) -> None:
    import sys

    clock = FakeClock(datetime(2026, 12, 1, 12, 0, tzinfo=UTC))
    status = DaemonStatus(clock)
    server = HealthServer(
        "127.0.0.1:0",
        status=status,
        registry=DaemonMetrics().registry,
        clock=clock,
        stale_after=timedelta(minutes=45),
    ).start()
    address = f"0.0.0.0:{server.port}"
    config = tmp_path / "leakwatch.toml"
    env = {"PATH": "/usr/bin:/bin", "LEAKWATCH_CONFIG": str(config)}
    if where == "environment":
        env["LEAKWATCH_HEALTH_ADDRESS"] = address
        config.write_text('[daemon]\nhealth_address = "127.0.0.1:1"\n')
    else:
        config.write_text(f'[daemon]\nhealth_address = "{address}"\n')

    def probe() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "leakwatch.daemon.healthcheck"],
            env={**env, "PYTHONPATH": str(ROOT)},
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )

    try:
        healthy = probe()
        assert healthy.returncode == 0, healthy.stdout + healthy.stderr
        from leakwatch.daemon.health import Role

        status.set_role(Role.STOPPING)  # /healthz now answers 503
        unhealthy = probe()
        assert unhealthy.returncode == 1 and "503" in unhealthy.stdout
    finally:
        server.stop()
    down = probe()
    assert down.returncode == 1 and "unhealthy" in down.stdout


def test_metrics_report_the_installed_version() -> None:
    from importlib.metadata import version

    from leakwatch.daemon.metrics import sample_value

    registry = DaemonMetrics().registry
    assert sample_value(registry, "leakwatch_build_info", version=version("leakwatch")) == 1
