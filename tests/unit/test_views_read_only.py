"""Views never write: what they take from store/ is on a list of reads.

import-linter keeps views/ away from the stages, the senders and the writer-only store
modules (pyproject.toml); store modules that hold both reads and writes (alert rows,
runs, the outbox) are checked here, name by name. A new read goes on the list; a write
has no business in a view.
"""

import ast
from pathlib import Path

import leakwatch

VIEWS = Path(leakwatch.__file__).resolve().parent / "views"
READS = {
    "leakwatch.store.db": {"SessionFactory", "transaction"},
    "leakwatch.store.models": {"SampledEvent", "SamplingRun"},
    "leakwatch.store.queries": {
        "OutcomeCounts",
        "SampleFilter",
        "outcome_counts",
        "sampled_events_of",
        "segment_counts",
        "stream_sampled_events",
        "volume_rows",
    },
    "leakwatch.store.source_queries": {
        "BadLines",
        "ReadPosition",
        "bad_lines_with_examples",
        "read_positions",
        "source_state",
    },
    "leakwatch.store.report_queries": {"fetch_bad_lines"},
    "leakwatch.store.outcomes": {"source_event_of"},
    "leakwatch.store.alerts": {"OpenAlert", "list_open"},
    "leakwatch.store.billing": {"reconciled_totals"},
    "leakwatch.store.outbox": {"outbox_summary"},
    "leakwatch.store.runs": {"latest_run"},
}


def _store_names(path: Path) -> set[tuple[str, str]]:
    """(store module, name) for each store name the module uses."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    used: set[tuple[str, str]] = set()
    modules: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                if node.module == "leakwatch.store":
                    modules[alias.asname or alias.name] = f"leakwatch.store.{alias.name}"
                elif node.module.startswith("leakwatch.store."):
                    used.add((node.module, alias.name))
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in modules
        ):
            used.add((modules[node.value.id], node.attr))
    return used


def test_views_take_only_reads_from_the_store() -> None:
    found = {name for path in VIEWS.glob("*.py") for name in _store_names(path)}
    assert found, "the views read the store through store/"
    writes = sorted(f"{m}.{n}" for m, n in found if n not in READS.get(m, set()))
    assert writes == []
