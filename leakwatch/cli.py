"""The command line: parse, build (through wiring), call, print. No logic lives here."""

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console

from leakwatch.errors import LeakwatchError, NotAvailableYet

app = typer.Typer(
    name="leakwatch",
    help="Catch revenue leakage in usage-based billing on Metronome.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="The store's schema.", no_args_is_help=True)
alerts_app = typer.Typer(help="Open alerts; silence or acknowledge them.")
app.add_typer(db_app, name="db")
app.add_typer(alerts_app, name="alerts")

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="Config file (default: $LEAKWATCH_CONFIG, else ./leakwatch.toml).",
        show_default=False,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable JSON output.")]

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


@contextmanager
def _user_errors() -> Iterator[None]:
    """Turn every anticipated failure into a message and an exit code, never a traceback."""
    try:
        yield
    except LeakwatchError as exc:
        err.print(f"error: {exc}", markup=False, style="red")
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        err.print("interrupted; what was recorded is kept")
        raise typer.Exit(130) from None


def _not_yet(what: str, issue: int) -> NoReturn:
    raise NotAvailableYet(f"`leakwatch {what}` is not available yet (it lands with issue #{issue})")


@app.command()
def init(
    config: ConfigOption = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
) -> None:
    """Write a commented example leakwatch.toml that loads as it is."""
    from leakwatch.config import config_path

    with _user_errors():
        target = config_path(config)
        if target.exists() and not force:
            raise LeakwatchError(f"{target} exists; use --force to overwrite it")
        text = resources.files("leakwatch").joinpath("templates/leakwatch.toml").read_text()
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        out.print(f"wrote {target}; edit [[sources]] and set METRONOME_BEARER_TOKEN", markup=False)


@db_app.command("upgrade")
def db_upgrade(config: ConfigOption = None) -> None:
    """Apply the store's migrations (creates the database schema)."""
    from leakwatch.store.db import current_revision
    from leakwatch.wiring import open_engine, settings_for

    with _user_errors():
        settings = settings_for(config)
        engine = open_engine(settings, migrate=True)
        out.print(f"database at revision {current_revision(engine)} (up to date)")
        engine.dispose()


@app.command()
def demo(
    keep: Annotated[
        Path | None,
        typer.Option("--keep", help="Keep the demo's files in this folder instead of a temp dir."),
    ] = None,
) -> None:
    """A self-contained tour: simulated Metronome, injected leaks, cycles, an alert, a report."""
    with _user_errors():
        _not_yet("demo", 5)


@app.command()
def check(config: ConfigOption = None, as_json: JsonOption = False) -> None:
    """Run one cycle: sample, search, record, re-check, evaluate alerts, notify."""
    with _user_errors():
        _not_yet("check", 5)


@app.command()
def run(config: ConfigOption = None) -> None:
    """Run the daemon: scheduled cycles, alerts, weekly report, /healthz and /metrics."""
    with _user_errors():
        _not_yet("run", 7)


@app.command()
def status(
    config: ConfigOption = None,
    as_json: JsonOption = False,
    window: Annotated[str, typer.Option(help="How far back to count samples.")] = "24h",
) -> None:
    """Per source and outcome: counts, rates with confidence intervals; open alerts."""
    with _user_errors():
        _not_yet("status", 5)


@app.command()
def outcomes(
    config: ConfigOption = None,
    outcome: Annotated[
        list[str] | None, typer.Option("--outcome", help="Only these outcomes (repeatable).")
    ] = None,
    since: Annotated[str, typer.Option(help="Sampled within this long ago.")] = "7d",
    source: Annotated[str | None, typer.Option(help="Only this source.")] = None,
    fmt: Annotated[str, typer.Option("--format", help="jsonl or csv.")] = "jsonl",
) -> None:
    """Export sampled events with their outcome, one per line."""
    with _user_errors():
        _not_yet("outcomes", 5)


@app.command()
def lookup(
    transaction_ids: Annotated[list[str], typer.Argument(help="Transaction ids to look up.")],
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show what Metronome holds for these transaction ids, and leakwatch's verdict."""
    with _user_errors():
        _not_yet("lookup", 3)


@app.command()
def report(
    config: ConfigOption = None,
    week: Annotated[
        str | None, typer.Option(help="ISO week, e.g. 2026-W47 (default: last week).")
    ] = None,
    out_dir: Annotated[Path | None, typer.Option("--out", help="Folder to write to.")] = None,
    send: Annotated[bool, typer.Option("--send", help="Post the summary to Slack.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Post again if already sent.")] = False,
) -> None:
    """Write the weekly leakage report (Markdown, HTML, JSON, PNG chart)."""
    with _user_errors():
        _not_yet("report", 8)


@app.command()
def simulator(
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8787,
    token: Annotated[
        str | None,
        typer.Option(help="Bearer token to accept (default: $METRONOME_BEARER_TOKEN)."),
    ] = None,
    rate_limit: Annotated[
        float, typer.Option("--rate-limit", help="Search requests per second allowed.")
    ] = 5.0,
    fault_rate: Annotated[
        float, typer.Option("--fault-rate", help="Share of requests answered 500.")
    ] = 0.0,
    seed: Annotated[
        Path | None, typer.Option("--seed", help="JSON file with customers, metrics, events.")
    ] = None,
) -> None:
    """Serve the Metronome API simulator (ingest and event search)."""
    with _user_errors():
        _not_yet("simulator", 3)


@app.command()
def sample(
    source: Annotated[str, typer.Argument(help="Name of a configured source.")],
    config: ConfigOption = None,
    n: Annotated[int, typer.Option("-n", "--count", help="How many events to draw.")] = 100,
    seed: Annotated[int | None, typer.Option(help="Random seed, for a repeatable draw.")] = None,
) -> None:
    """Print a sample drawn from a source (JSON lines), without checking it."""
    with _user_errors():
        _not_yet("sample", 4)


@alerts_app.callback(invoke_without_command=True)
def alerts_list(
    ctx: typer.Context, config: ConfigOption = None, as_json: JsonOption = False
) -> None:
    """List open alerts."""
    if ctx.invoked_subcommand is not None:
        return
    with _user_errors():
        _not_yet("alerts", 6)


@alerts_app.command("silence")
def alerts_silence(
    name: Annotated[str, typer.Argument(help="Alert rule name.")],
    duration: Annotated[str, typer.Option("--for", help="How long, e.g. 4h.")] = "4h",
    scope: Annotated[str | None, typer.Option(help="Only this group, e.g. event_type=x.")] = None,
    config: ConfigOption = None,
) -> None:
    """Stop an alert's notifications for a while; its state is kept."""
    with _user_errors():
        _not_yet("alerts silence", 6)


@alerts_app.command("ack")
def alerts_ack(
    name: Annotated[str, typer.Argument(help="Alert rule name.")],
    scope: Annotated[str | None, typer.Option(help="Only this group, e.g. event_type=x.")] = None,
    config: ConfigOption = None,
) -> None:
    """Acknowledge a firing alert: no more reminders this episode."""
    with _user_errors():
        _not_yet("alerts ack", 6)


def _print_json(value: object) -> None:
    sys.stdout.write(json.dumps(value, indent=2, default=str) + "\n")


def main() -> None:
    app()
