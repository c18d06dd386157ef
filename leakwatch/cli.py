"""The command line: parse, build (through wiring), call, print. No logic lives here."""

import json
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from importlib import resources
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from typer.core import TyperCommand

from leakwatch.errors import LeakwatchError

if TYPE_CHECKING:
    from datetime import datetime

    from leakwatch.config import Settings, SourceSettings
    from leakwatch.store.db import SessionFactory

# Shown at the end of each command's help, like git's and gh's (kept under 80 columns).
EXAMPLES: dict[str, tuple[str, ...]] = {
    "init": ("leakwatch init", "leakwatch init -c /etc/leakwatch/leakwatch.toml --force"),
    "db_upgrade": (
        "leakwatch db upgrade",
        "LEAKWATCH_DATABASE_URL=postgresql+psycopg://lw@db/lw leakwatch db upgrade",
    ),
    "demo": ("leakwatch demo", "leakwatch demo --keep ./demo"),
    "check": (
        "leakwatch check",
        "leakwatch check --json | jq .verdicts",
        "leakwatch check --recheck-only",
    ),
    "run": ("leakwatch run", "LEAKWATCH_HEALTH_ADDRESS=0.0.0.0:9108 leakwatch run"),
    "status": (
        "leakwatch status",
        "leakwatch status --window 7d",
        "leakwatch status --json | jq .overall",
    ),
    "reconcile": (
        "leakwatch reconcile",
        "leakwatch reconcile --days 3 --customer acme",
        "leakwatch reconcile --json",
    ),
    "outcomes": (
        "leakwatch outcomes --outcome missing --since 24h",
        "leakwatch outcomes --event-type gpu_seconds --format csv > leaks.csv",
    ),
    "lookup": ("leakwatch lookup txn-123 txn-456", "leakwatch lookup txn-123 --json"),
    "report": (
        "leakwatch report",
        "leakwatch report --week 2026-W47 --out reports/",
        "leakwatch report --send",
    ),
    "simulator": (
        "leakwatch simulator --token-file ./token",
        "leakwatch simulator --seed my-customers.json --rate-limit 5",
    ),
    "sample": ("leakwatch sample gateway -n 20", "leakwatch sample gateway -n 1000 --seed 1"),
    "sources": ("leakwatch sources", "leakwatch sources --json | jq '.[0].bad_lines'"),
    "alerts_list": ("leakwatch alerts list", "leakwatch alerts list --json"),
    "alerts_silence": (
        'leakwatch alerts silence "leak rate" --for 4h',
        'leakwatch alerts silence "by type" --scope event_type=gpu_seconds',
    ),
    "alerts_ack": ('leakwatch alerts ack "leak rate"',),
    "alerts_unsilence": ('leakwatch alerts unsilence "leak rate"',),
}


def _examples(command: str) -> str:
    """Click's epilog for `command`; the \\b line keeps click from re-wrapping it."""
    return "\b\nExamples:\n" + "\n".join(f"  {line}" for line in EXAMPLES[command])


# Plain help, like git's and gh's: `-h` as well as `--help`, no type placeholders.
HELP_SETTINGS = {"help_option_names": ["-h", "--help"]}


class PlainCommand(TyperCommand):
    """Help as git and gh write it: `lookup [OPTIONS] TRANSACTION_ID...`, no `<type>` labels.

    Typer labels every argument with its Python type and wraps required ones in braces;
    a user wants the metavar and what it is for. (Typer vendors click, so parameters are
    told apart by click's `param_type_name`.)
    """

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        return pieces + [
            _argument_label(p) for p in self.get_params(ctx) if p.param_type_name == "argument"
        ]

    def format_options(self, ctx: Any, formatter: Any) -> None:
        params = self.get_params(ctx)
        arguments = [
            (_argument_label(p), getattr(p, "help", None) or "")
            for p in params
            if p.param_type_name == "argument"
        ]
        options = [
            record
            for p in params
            if p.param_type_name == "option" and (record := p.get_help_record(ctx)) is not None
        ]
        for title, rows in (("Arguments", arguments), ("Options", options)):
            if rows:
                with formatter.section(title):
                    formatter.write_dl(rows)


def _argument_label(param: Any) -> str:
    label = str(param.metavar or param.name or "").upper()
    if param.nargs != 1 and not label.endswith("..."):
        label += "..."
    return label if param.required else f"[{label}]"


LOG_LEVELS = ("debug", "info", "warning", "error")

app = typer.Typer(
    name="leakwatch",
    help="Catch revenue leakage in usage-based billing on Metronome.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings=HELP_SETTINGS,
)
db_app = typer.Typer(
    help="The store's schema.",
    no_args_is_help=True,
    rich_markup_mode=None,
    context_settings=HELP_SETTINGS,
)
alerts_app = typer.Typer(
    help="Open alerts; silence or acknowledge them.",
    rich_markup_mode=None,
    context_settings=HELP_SETTINGS,
)
app.add_typer(db_app, name="db")
app.add_typer(alerts_app, name="alerts")

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        metavar="PATH",
        help="Config file (default: $LEAKWATCH_CONFIG, else ./leakwatch.toml).",
        show_default=False,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable JSON output.")]

# Set by the root options (or LEAKWATCH_LOG_LEVEL); wins over each command's default.
_log_level: str | None = None


def version() -> str:
    """The installed distribution's version (the one pyproject.toml declares)."""
    import leakwatch

    return str(leakwatch.__version__)


def _show_version(value: bool) -> None:
    if value:
        sys.stdout.write(f"leakwatch {version()}\n")
        raise typer.Exit()


@app.callback()
def root(
    show_version: Annotated[
        bool,
        typer.Option(
            "--version", help="Print the version and exit.", is_eager=True, callback=_show_version
        ),
    ] = False,
    log_level: Annotated[
        str | None,
        typer.Option(
            "--log-level",
            metavar="LEVEL",
            help="Log level on stderr: debug, info, warning or error "
            "(default: $LEAKWATCH_LOG_LEVEL, else warning on a terminal, info otherwise).",
            show_default=False,
        ),
    ] = None,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Log everything (same as --log-level debug).")
    ] = False,
) -> None:
    """Catch revenue leakage in usage-based billing on Metronome.

    Set LEAKWATCH_DEBUG=1 to see the traceback of an unexpected error.
    """
    global _log_level  # noqa: PLW0603  (one process, one command: the root options are global)
    chosen = "debug" if verbose else (log_level or os.environ.get("LEAKWATCH_LOG_LEVEL"))
    if chosen is not None and chosen.lower() not in LOG_LEVELS:
        source = "--log-level" if log_level else "LEAKWATCH_LOG_LEVEL"
        err.print(
            f"error: {source} {chosen!r} is not a log level; use one of {', '.join(LOG_LEVELS)}",
            markup=False,
            style="red",
        )
        raise typer.Exit(2)
    _log_level = chosen.lower() if chosen else None


def _console(*, stderr: bool) -> Console:
    console = Console(stderr=stderr, highlight=False)
    if not console.is_terminal and not os.environ.get("COLUMNS", "").isdigit():
        # Piped or captured output has no width; tables read better wide than wrapped,
        # unless COLUMNS says how wide the reader is.
        console = Console(stderr=stderr, highlight=False, width=140)
    return console


out = _console(stderr=False)
err = _console(stderr=True)


@contextmanager
def _user_errors() -> Iterator[None]:
    """Turn every anticipated failure into a message and an exit code, never a traceback."""
    try:
        yield
    except LeakwatchError as exc:
        err.print(f"error: {_redact(str(exc))}", markup=False, style="red")
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        err.print("interrupted; what was recorded is kept")
        raise typer.Exit(130) from None
    except (typer.Exit, typer.Abort):
        raise
    except Exception as exc:
        # A bug, not a user error: say so plainly; the traceback only on request.
        if os.environ.get("LEAKWATCH_DEBUG"):
            err.print_exception()
        err.print(
            f"error: unexpected {type(exc).__name__}: {_redact(str(exc))}\n"
            "this is a bug in leakwatch; set LEAKWATCH_DEBUG=1 to see the traceback",
            markup=False,
            style="red",
        )
        raise typer.Exit(1) from None


def _redact(message: str) -> str:
    """Remove secrets from a message for the terminal, as the log redactor would.

    Before the message is printed (and wrapped): the secrets the command's logging
    knows, plus every secret in the environment in case the settings never loaded.
    """
    from leakwatch.config import environment_secrets
    from leakwatch.logs import SecretRedactor, redactor_in_use

    redactor = redactor_in_use() or SecretRedactor()
    for secret in environment_secrets(os.environ):
        redactor.add(secret)
    return redactor.redact_text(message)


@contextmanager
def _first_interrupt_stops() -> Iterator[threading.Event]:
    """Make the first Ctrl-C a stop request, so lookups already made are recorded.

    The cycle looks at the event between slices of search calls; a second Ctrl-C
    aborts at once (KeyboardInterrupt), keeping only what was already written.
    """
    stopping = threading.Event()

    def on_interrupt(_signum: int, _frame: FrameType | None) -> None:
        if stopping.is_set():
            raise KeyboardInterrupt
        stopping.set()
        err.print(
            "stopping after the current search calls, recording what was looked up "
            "(Ctrl-C again to abort)"
        )

    previous = signal.signal(signal.SIGINT, on_interrupt)
    try:
        yield stopping
    finally:
        signal.signal(signal.SIGINT, previous)


@app.command(
    cls=PlainCommand,
    short_help="Write a commented example leakwatch.toml.",
    epilog=_examples("init"),
)
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


@db_app.command(
    "upgrade",
    cls=PlainCommand,
    epilog=_examples("db_upgrade"),
)
def db_upgrade(config: ConfigOption = None) -> None:
    """Apply the store's migrations (creates the database schema)."""
    from leakwatch.wiring import settings_for, upgrade_store

    with _user_errors():
        settings = settings_for(config)
        _setup_logs(settings, quiet=True)
        before, after = upgrade_store(settings)
        if before is None:
            out.print(f"created the schema at revision {after}", markup=False)
        elif before == after:
            out.print(f"already at revision {after} (up to date)", markup=False)
        else:
            out.print(f"upgraded the schema from revision {before} to {after}", markup=False)


@app.command(
    cls=PlainCommand,
    short_help="A self-contained tour on a simulated Metronome.",
    epilog=_examples("demo"),
)
def demo(
    keep: Annotated[
        Path | None,
        typer.Option(
            "--keep",
            metavar="DIR",
            help="Keep the demo's files in this folder instead of a temp dir.",
        ),
    ] = None,
) -> None:
    """A self-contained tour: simulated Metronome, injected leaks, cycles, an alert, a report."""
    from leakwatch.simulator.demo import run_demo

    with _user_errors():
        _setup_logs(None, quiet=True)
        code = run_demo(out, keep=keep)
    raise typer.Exit(code)


@app.command(
    cls=PlainCommand,
    short_help="Run one cycle: sample, look up, record, alert.",
    epilog=_examples("check"),
)
def check(
    config: ConfigOption = None,
    as_json: JsonOption = False,
    recheck_only: Annotated[
        bool, typer.Option("--recheck-only", help="Only re-check what is due; draw nothing.")
    ] = False,
) -> None:
    """Run one cycle: sample, search, record, re-check, evaluate alerts, notify."""
    from leakwatch.clock import SystemClock
    from leakwatch.daemon.leader import searching_alone
    from leakwatch.wiring import build_runtime, settings_for

    with _user_errors(), _first_interrupt_stops() as stopping:
        settings = settings_for(config)
        _setup_logs(settings, quiet=as_json)
        from leakwatch.views.terminal import lookup_progress

        with searching_alone(settings), lookup_progress(err) as progress:
            runtime = build_runtime(
                settings,
                clock=SystemClock(),
                should_stop=stopping.is_set,
                lookup_progress=progress,
            )
            try:
                summary = runtime.run_cycle(draw=not recheck_only)
                alerts = runtime.evaluate_alerts()
                sent = runtime.send_notifications()
                runtime.catch_up_tail()
            finally:
                runtime.close()
        if as_json:
            body = summary.to_dict()
            body["alerts"] = [
                {
                    "rule": a.rule_name,
                    "scope": a.scope,
                    "status": a.status.value,
                    "notification": a.notification.value if a.notification else None,
                }
                for a in alerts
            ]
            body["notifications_sent"] = sent.sent if sent is not None else None
            body["stopped_by_interrupt"] = stopping.is_set()
            _print_json(body)
        else:
            from leakwatch.views.terminal import print_cycle_summary

            print_cycle_summary(out, summary, alerts, sent)
    if stopping.is_set():
        err.print("stopped by Ctrl-C: what was looked up is recorded; the rest stays due")
        raise typer.Exit(130)
    failures = summary.failures()
    if failures:
        # Exit 1: the cycle could not check what it set out to (DESIGN "Exit codes");
        # what it did record is kept.
        err.print(
            _redact(
                "error: the check could not do its job:\n" + "\n".join(f"  - {f}" for f in failures)
            ),
            markup=False,
            style="red",
        )
        raise typer.Exit(1)


@app.command(
    cls=PlainCommand,
    short_help="Run the daemon: cycles, alerts, reports, /metrics.",
    epilog=_examples("run"),
)
def run(config: ConfigOption = None) -> None:
    """Run the daemon: scheduled cycles, alerts, weekly report, /healthz and /metrics."""
    from leakwatch.clock import SystemClock
    from leakwatch.daemon.run import run_daemon
    from leakwatch.wiring import settings_for

    with _user_errors():
        settings = settings_for(config)
        _setup_logs(settings, level="info")
        code = run_daemon(settings, clock=SystemClock())
    raise typer.Exit(code)


@app.command(
    cls=PlainCommand,
    short_help="How much is leaking: rates, intervals, money.",
    epilog=_examples("status"),
)
def status(
    config: ConfigOption = None,
    as_json: JsonOption = False,
    window: Annotated[
        str, typer.Option(metavar="DURATION", help="How far back to count samples, e.g. 24h or 7d.")
    ] = "24h",
) -> None:
    """Per source and outcome: counts, rates with confidence intervals; open alerts."""
    from leakwatch.clock import SystemClock
    from leakwatch.store.db import session_factory
    from leakwatch.views.status import build_status
    from leakwatch.wiring import open_engine, settings_for

    with _user_errors():
        span = _duration_option("--window", window)
        settings = settings_for(config)
        _setup_logs(settings, quiet=True)
        engine = open_engine(settings)
        try:
            view = build_status(
                session_factory(engine),
                now=SystemClock().now(),
                window=span,
                prices=settings.report.prices,
                currency=settings.report.currency,
            )
        finally:
            engine.dispose()
        if as_json:
            _print_json(view.to_dict())
            return
        from leakwatch.views.terminal import print_status

        print_status(out, view)


@app.command(
    cls=PlainCommand,
    short_help="Exact billed-vs-sent totals from /v1/usage.",
    epilog=_examples("reconcile"),
)
def reconcile(
    config: ConfigOption = None,
    as_json: JsonOption = False,
    days: Annotated[
        int | None,
        typer.Option(min=1, max=33, metavar="N", help="Complete UTC days to compare (default 7)."),
    ] = None,
    customer: Annotated[
        str | None,
        typer.Option(
            metavar="CUSTOMER", help="Only this customer: Metronome id, name or an ingest alias."
        ),
    ] = None,
    show_all: Annotated[
        bool, typer.Option("--all", help="Show rows within tolerance too.")
    ] = False,
) -> None:
    """Expected vs billed per customer × metric × day, from Metronome's /v1/usage."""
    from leakwatch.clock import SystemClock
    from leakwatch.wiring import build_runtime, settings_for

    with _user_errors():
        settings = settings_for(config)
        _setup_logs(settings, quiet=as_json)
        runtime = build_runtime(settings, clock=SystemClock())
        try:
            result = runtime.reconcile(days=days, customer=customer)
        finally:
            runtime.close()
        if as_json:
            _print_json(result.to_dict())
        else:
            from leakwatch.views.terminal import print_reconciliation

            print_reconciliation(out, result, currency=settings.report.currency, show_all=show_all)
    if result.days and not result.rows and result.notes:
        raise typer.Exit(1)


@app.command(
    cls=PlainCommand,
    short_help="Export sampled events with their outcome.",
    epilog=_examples("outcomes"),
)
def outcomes(
    config: ConfigOption = None,
    outcome: Annotated[
        list[str] | None,
        typer.Option("--outcome", metavar="OUTCOME", help="Only these outcomes (repeatable)."),
    ] = None,
    since: Annotated[
        str, typer.Option(metavar="DURATION", help="Sampled within this long ago.")
    ] = "7d",
    source: Annotated[str | None, typer.Option(metavar="SOURCE", help="Only this source.")] = None,
    event_type: Annotated[
        str | None, typer.Option("--event-type", metavar="EVENT_TYPE", help="Only this event type.")
    ] = None,
    customer: Annotated[
        str | None,
        typer.Option("--customer", metavar="CUSTOMER_ID", help="Only this customer_id (as sent)."),
    ] = None,
    fmt: Annotated[
        str, typer.Option("--format", metavar="jsonl|csv", help="Output format.")
    ] = "jsonl",
) -> None:
    """Export sampled events with their outcome, one per line."""
    from leakwatch.clock import SystemClock
    from leakwatch.core.events import Outcome
    from leakwatch.errors import UsageProblem
    from leakwatch.store.db import session_factory
    from leakwatch.store.queries import SampleFilter
    from leakwatch.views.export import iter_outcomes, write_csv, write_jsonl
    from leakwatch.wiring import open_engine, settings_for

    with _user_errors():
        span = _duration_option("--since", since)
        if fmt not in ("jsonl", "csv"):
            raise UsageProblem(f"--format {fmt!r}: use jsonl or csv")
        known = {o.value for o in Outcome}
        for name in outcome or []:
            if name not in known:
                raise UsageProblem(f"--outcome {name!r}: use one of {', '.join(sorted(known))}")
        settings = settings_for(config)
        _setup_logs(settings, quiet=True)
        engine = open_engine(settings)
        try:
            which = SampleFilter(
                since=SystemClock().now() - span,
                outcomes=tuple(outcome or ()),
                source=source,
                event_type=event_type,
                customer_id=customer,
            )
            records = iter_outcomes(session_factory(engine), which)
            writer = write_jsonl if fmt == "jsonl" else write_csv
            written = writer(records, sys.stdout)
        except BrokenPipeError:
            # `| head` closed the pipe: that is success for an export.
            sys.stderr.close()
            return
        finally:
            engine.dispose()
        err.print(f"{written} sampled events", markup=False)


@app.command(
    cls=PlainCommand,
    short_help="Show what Metronome holds for transaction ids.",
    epilog=_examples("lookup"),
)
def lookup(
    transaction_ids: Annotated[
        list[str],
        typer.Argument(
            metavar="TRANSACTION_ID...", help="Transaction ids to look up.", show_default=False
        ),
    ],
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show what Metronome holds for these transaction ids, and leakwatch's verdict."""
    from leakwatch.clock import SystemClock
    from leakwatch.metronome.errors import TokenRejected
    from leakwatch.store.db import session_factory
    from leakwatch.views.lookup import look_up
    from leakwatch.wiring import build_search_client, classify_policy, open_engine, settings_for

    with _user_errors():
        settings = settings_for(config)
        _setup_logs(settings, quiet=True)
        clock = SystemClock()
        engine = open_engine(settings)
        search = build_search_client(settings, clock)
        sources = {s.name: s for s in settings.sources}
        try:
            results = look_up(
                transaction_ids,
                search=search,
                sessions=session_factory(engine),
                policy_for=lambda name: classify_policy(settings, sources.get(name or "")),
                now=clock.now(),
            )
        except TokenRejected:
            raise LeakwatchError(
                "Metronome rejected the API token (HTTP 401/403): check METRONOME_BEARER_TOKEN"
            ) from None
        finally:
            search.close()
            engine.dispose()
        if as_json:
            _print_json([r.to_dict() for r in results])
        else:
            from leakwatch.views.terminal import print_lookup

            print_lookup(out, results)
        if results and all(r.error is not None for r in results):
            # Nothing was learnt: exit 1, as DESIGN's "Exit codes" ask (the why is above).
            raise LeakwatchError(f"no lookup succeeded: {results[0].error}")


@app.command(
    cls=PlainCommand,
    short_help="Write (and send) the weekly leakage report.",
    epilog=_examples("report"),
)
def report(
    config: ConfigOption = None,
    week: Annotated[
        str | None,
        typer.Option(
            metavar="YYYY-Www", help="ISO week, e.g. 2026-W47 (default: last complete week)."
        ),
    ] = None,
    out_dir: Annotated[
        Path | None, typer.Option("--out", metavar="DIR", help="Folder to write to.")
    ] = None,
    send: Annotated[bool, typer.Option("--send", help="Post the summary to Slack.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Post again if already sent.")] = False,
) -> None:
    """Write the weekly leakage report (Markdown, HTML, JSON, PNG chart)."""
    from leakwatch.clock import SystemClock
    from leakwatch.pipeline.report import produce_weekly_report
    from leakwatch.store.db import session_factory
    from leakwatch.wiring import build_report_slack, open_engine, settings_for

    with _user_errors():
        settings = settings_for(config)
        _setup_logs(settings, quiet=True)
        engine = open_engine(settings)
        try:
            outcome = produce_weekly_report(
                settings,
                sessions=session_factory(engine),
                slack=build_report_slack(settings) if send else None,
                now=SystemClock().now(),
                week=week,
                out_dir=out_dir,
                send=send,
                force=force,
            )
        finally:
            engine.dispose()
        out.print(outcome.content.summary, markup=False)
        for path in outcome.paths:
            out.print(f"wrote {path}", markup=False)
        if outcome.sent is not None:
            out.print(outcome.sent, markup=False)


@app.command(
    cls=PlainCommand,
    short_help="Serve the Metronome API simulator.",
    epilog=_examples("simulator"),
)
def simulator(
    host: Annotated[str, typer.Option(metavar="HOST", help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(metavar="PORT", help="Port to listen on.")] = 8787,
    token: Annotated[
        str | None,
        typer.Option(
            metavar="TOKEN",
            help="Bearer token to accept (default: $METRONOME_BEARER_TOKEN). Visible to "
            "other local users in the process list: prefer the variable or --token-file.",
        ),
    ] = None,
    token_file: Annotated[
        Path | None,
        typer.Option(
            "--token-file", metavar="FILE", help="Read the bearer token to accept from this file."
        ),
    ] = None,
    rate_limit: Annotated[
        float,
        typer.Option(
            "--rate-limit", metavar="RPS", help="Search requests per second allowed (0: none)."
        ),
    ] = 5.0,
    fault_rate: Annotated[
        float,
        typer.Option(
            "--fault-rate",
            metavar="SHARE",
            help="Share of search requests that fail (500s, dropped connections, bad bodies, "
            "slow answers).",
        ),
    ] = 0.0,
    seed: Annotated[
        Path | None,
        typer.Option(
            "--seed",
            metavar="FILE",
            help="JSON file with customers, billable metrics and events to serve instead "
            "of the demo's.",
        ),
    ] = None,
) -> None:
    """Serve the Metronome API simulator (ingest and event search).

    Without --seed it serves the demo's Metronome: the customers Acme Corp (aliases
    acme, billing@acme.example), Globex (globex), Initech (initech) and Umbrella
    (umbrella), and billable metrics for the event types api_request, gpu_seconds and
    tokens (storage_gb has none). Events sent for other customer ids come back
    unmatched_customer: give --seed FILE, a JSON file with your own customers (their
    ingest_aliases are the customer_id your events carry) and billable metrics; the
    README's "The simulator with your own customers" shows one.

    \b
    Examples:
      leakwatch simulator --token-file token.txt
      leakwatch simulator --token-file token.txt --seed seed.json --port 8788
    """
    import os

    from leakwatch.errors import UsageProblem
    from leakwatch.logs import configure_logging
    from leakwatch.simulator import serve

    with _user_errors():
        if token is not None and token_file is not None:
            raise UsageProblem("give --token or --token-file, not both")
        if token_file is not None:
            try:
                token = token_file.read_text(encoding="utf-8").strip()
            except (OSError, UnicodeDecodeError) as exc:
                raise UsageProblem(f"--token-file {token_file}: cannot read it ({exc})") from None
            if not token:
                raise UsageProblem(f"--token-file {token_file}: the file is empty")
        elif token is not None:
            err.print(
                "warning: --token puts the token on the command line, where other local users "
                "can read it; prefer METRONOME_BEARER_TOKEN or --token-file",
                style="yellow",
            )
        accepted = token or os.environ.get("METRONOME_BEARER_TOKEN", "").strip()
        if not accepted:
            raise UsageProblem(
                "give --token-file, set METRONOME_BEARER_TOKEN, or give --token: the token "
                "to accept"
            )
        if not 0 <= fault_rate <= 1:
            raise UsageProblem(f"--fault-rate {fault_rate}: use a share between 0 and 1")
        if seed is not None and not seed.exists():
            raise UsageProblem(f"--seed {seed}: no such file")
        configure_logging().add(accepted)
        try:
            serve(
                host=host,
                port=port,
                token=accepted,
                rate_limit_rps=rate_limit or None,
                fault_rate=fault_rate,
                seed_path=seed,
            )
        except OSError as exc:
            raise LeakwatchError(f"cannot serve on {host}:{port}: {exc.strerror or exc}") from None


@app.command(
    cls=PlainCommand,
    short_help="Print a sample drawn from a source, unchecked.",
    epilog=_examples("sample"),
)
def sample(
    source: Annotated[
        str,
        typer.Argument(metavar="SOURCE", help="Name of a configured source.", show_default=False),
    ],
    config: ConfigOption = None,
    n: Annotated[
        int, typer.Option("-n", "--count", metavar="N", help="How many events to draw.")
    ] = 100,
    seed: Annotated[
        int | None, typer.Option(metavar="N", help="Random seed, for a repeatable draw.")
    ] = None,
) -> None:
    """Print a sample drawn from a source (JSON lines), without checking it."""
    from leakwatch.clock import SystemClock
    from leakwatch.core.text import json_line
    from leakwatch.errors import UsageProblem
    from leakwatch.sources import sample_source
    from leakwatch.views.terminal import print_sample_counts, progress_bar
    from leakwatch.wiring import build_source, settings_for

    with _user_errors():
        if n < 1:
            raise UsageProblem("-n must be at least 1")
        settings = settings_for(config)
        _setup_logs(settings, quiet=True)
        configured = settings.source(source)
        _require_readable(configured, settings)
        with progress_bar(err, f"sampling {source}") as progress:
            result = sample_source(
                build_source(settings, configured),
                n,
                now=SystemClock().now(),
                seed=seed,
                progress=progress,
            )
        for drawn in result.events:
            record = drawn.event.to_ingest_json()
            record["_weight"] = drawn.weight
            if drawn.stratum is not None:
                record["_stratum"] = drawn.stratum
            sys.stdout.write(json_line(record) + "\n")
        print_sample_counts(err, result)


@app.command(
    "sources",
    cls=PlainCommand,
    short_help="What each source holds, and how it is read.",
    epilog=_examples("sources"),
)
def sources_command(config: ConfigOption = None, as_json: JsonOption = False) -> None:
    """Per source: files/objects, window, volume by type and day, bad lines with examples."""
    from leakwatch.clock import SystemClock
    from leakwatch.store.db import session_factory
    from leakwatch.views.sources import SourceWindow, build_sources_view
    from leakwatch.wiring import build_source, open_engine, settings_for

    with _user_errors():
        settings = settings_for(config)
        _setup_logs(settings, quiet=True)
        inventories = {}
        for configured in settings.sources:
            built = build_source(settings, configured)
            try:
                inventories[configured.name] = built.describe()
            finally:
                built.close()
        store = open_engine(settings)
        try:
            view = build_sources_view(
                session_factory(store),
                now=SystemClock().now(),
                windows=[SourceWindow(s.name, s.settle_delay, s.max_age) for s in settings.sources],
                inventories=inventories,
            )
        finally:
            store.dispose()
        if as_json:
            _print_json(view.to_dict())
            return
        from leakwatch.views.terminal import print_sources

        print_sources(out, view)


@alerts_app.callback(invoke_without_command=True)
def alerts_default(
    ctx: typer.Context, config: ConfigOption = None, as_json: JsonOption = False
) -> None:
    """Open alerts (`alerts list`); silence, unsilence or acknowledge them."""
    if ctx.invoked_subcommand is None:
        _list_alerts(config, as_json)


@alerts_app.command(
    "list",
    cls=PlainCommand,
    epilog=_examples("alerts_list"),
)
def alerts_list(config: ConfigOption = None, as_json: JsonOption = False) -> None:
    """List open alerts: firing or pending, silenced or acknowledged."""
    _list_alerts(config, as_json)


def _list_alerts(config: Path | None, as_json: bool) -> None:
    from dataclasses import asdict

    from leakwatch.clock import SystemClock
    from leakwatch.store.alerts import list_open
    from leakwatch.store.db import session_factory
    from leakwatch.wiring import open_engine, settings_for

    with _user_errors():
        settings = settings_for(config)
        _setup_logs(settings, quiet=True)
        engine = open_engine(settings)
        try:
            found = list_open(session_factory(engine), SystemClock().now())
        finally:
            engine.dispose()
        if as_json:
            _print_json([asdict(a) for a in found])
            return
        from leakwatch.views.terminal import print_alerts

        print_alerts(out, found)


AlertNameArgument = Annotated[
    str, typer.Argument(metavar="NAME", help="Alert rule name.", show_default=False)
]
AlertScopeOption = Annotated[
    str | None, typer.Option(metavar="BY=VALUE", help="Only this group, e.g. event_type=x.")
]


def _on_alerts(
    config: Path | None,
    name: str,
    scope: str | None,
    act: Callable[["SessionFactory"], int],
    verb: str,
    after: str = "",
) -> None:
    """Check the rule (and scope) exist, `act` on the store, and say how many alerts it
    touched ("silenced 2 alert(s) of 'leak rate' until …")."""
    from leakwatch.store.db import session_factory
    from leakwatch.wiring import open_engine, settings_for

    with _user_errors():
        settings = settings_for(config)
        _setup_logs(settings, quiet=True)
        _known_alert(settings, name, scope)
        engine = open_engine(settings)
        try:
            sessions = session_factory(engine)
            _scope_can_exist(settings, sessions, name, scope)
            count = act(sessions)
        finally:
            engine.dispose()
    out.print(f"{verb} {count} alert(s) of {name!r}{after}", markup=False)


@alerts_app.command(
    "silence",
    cls=PlainCommand,
    epilog=_examples("alerts_silence"),
)
def alerts_silence(
    name: AlertNameArgument,
    duration: Annotated[
        str, typer.Option("--for", metavar="DURATION", help="How long, e.g. 4h.")
    ] = "4h",
    scope: AlertScopeOption = None,
    config: ConfigOption = None,
) -> None:
    """Stop an alert's notifications for a while; its state is kept."""
    from leakwatch.clock import SystemClock
    from leakwatch.store.alerts import silence

    with _user_errors():
        until = SystemClock().now() + _duration_option("--for", duration)

    def act(sessions: "SessionFactory") -> int:
        return silence(sessions, name, scope=scope, until=until)

    _on_alerts(config, name, scope, act, "silenced", f" until {_instant(until)}")


@alerts_app.command("ack", cls=PlainCommand, epilog=_examples("alerts_ack"))
def alerts_ack(
    name: AlertNameArgument, scope: AlertScopeOption = None, config: ConfigOption = None
) -> None:
    """Acknowledge a firing alert: no more reminders this episode."""
    from leakwatch.clock import SystemClock
    from leakwatch.store.alerts import ack

    now = SystemClock().now()
    _on_alerts(config, name, scope, lambda s: ack(s, name, scope=scope, now=now), "acknowledged")


@alerts_app.command("unsilence", cls=PlainCommand, epilog=_examples("alerts_unsilence"))
def alerts_unsilence(
    name: AlertNameArgument, scope: AlertScopeOption = None, config: ConfigOption = None
) -> None:
    """Lift a silence early: notifications resume at the next evaluation."""
    from leakwatch.store.alerts import unsilence

    _on_alerts(config, name, scope, lambda s: unsilence(s, name, scope=scope), "unsilenced")


def _instant(value: "datetime") -> str:
    from leakwatch.core.formatting import format_instant

    return format_instant(value)


def _known_alert(settings: "Settings", name: str, scope: str | None = None) -> None:
    """Refuse a rule that does not exist (a typo would silence nothing)."""
    from leakwatch.core.alerting import HealthKind
    from leakwatch.errors import UsageProblem

    known = [rule.name for rule in settings.alerts] + [kind.value for kind in HealthKind]
    if name not in known:
        raise UsageProblem(f"no alert rule named {name!r}; known: {', '.join(known)}")


def _scope_can_exist(
    settings: "Settings", sessions: "SessionFactory", name: str, scope: str | None
) -> None:
    """Refuse a --scope the rule can never have, naming the scopes it does have.

    A rule split `by = "event_type"` has scopes `event_type=…` (one not seen yet may be
    silenced ahead of trouble); a rule without `by` has only the one, unscoped alert.
    """
    from leakwatch.errors import UsageProblem
    from leakwatch.store.alerts import scopes_of_rule

    if scope is None:
        return
    rule = next((r for r in settings.alerts if r.name == name), None)
    if rule is None:
        return  # a health alert: its scopes name sources, checked by the store
    by = rule.by
    key, sep, value = scope.partition("=")
    if by is not None and key == by and sep and value:
        return
    existing = [s for s in scopes_of_rule(sessions, name) if s]
    if by is None:
        expected = f"rule {name!r} is not split by a group, so it has one alert: drop --scope"
    else:
        expected = f"rule {name!r} is split by {by}: write --scope {by}=VALUE"
    known = f"; scopes seen so far: {', '.join(existing[:10])}" if existing else ""
    raise UsageProblem(f"--scope {scope!r} cannot exist: {expected}{known}")


def _duration_option(flag: str, text: str) -> "timedelta":
    from leakwatch.core.durations import parse_duration
    from leakwatch.errors import UsageProblem

    try:
        span = parse_duration(text)
    except ValueError as exc:
        raise UsageProblem(f"{flag}: {exc}") from None
    if span <= timedelta(0):
        raise UsageProblem(f"{flag}: {text!r} is an empty span; give a positive one, e.g. 24h")
    return span


def _require_readable(configured: "SourceSettings", settings: "Settings") -> None:
    """Fail when a source cannot be read (e.g. a path matching no file): drawing nothing
    would hide the typo."""
    from leakwatch.wiring import build_source

    source = build_source(settings, configured)
    try:
        problems = source.problems()
    finally:
        source.close()
    if problems:
        raise LeakwatchError(f"source {configured.name!r}: " + "; ".join(problems))


def _setup_logs(
    settings: "Settings | None", *, quiet: bool = False, level: str | None = None
) -> None:
    """Log to stderr, redacting the configured secrets by value wherever they appear.

    A command printing a summary keeps logs to warnings on a terminal (or when quiet).
    """
    from leakwatch.logs import configure_logging

    chosen = _log_level or level or ("warning" if quiet or sys.stderr.isatty() else "info")
    redactor = configure_logging(level=chosen)
    for secret in settings.secret_values() if settings is not None else []:
        redactor.add(secret)


def _print_json(value: object) -> None:
    sys.stdout.write(json.dumps(value, indent=2, default=_json_default) + "\n")


def _json_default(value: object) -> str:
    """Instants as machines read them everywhere (RFC 3339 with `Z`); anything else as text."""
    from datetime import datetime

    from leakwatch.core.events import format_timestamp

    return format_timestamp(value) if isinstance(value, datetime) else str(value)


def main() -> None:
    app()
