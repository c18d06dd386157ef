"""How each SQL dialect samples a table inside the database; pure string building.

No I/O. The SQL source asks `sampling_for(dialect)` which method a database offers and
builds its clauses here, so the syntax of each warehouse sits in one table:

| dialect | method | clause (p in percent) |
|---|---|---|
| postgresql | pages, rows thinned within them | `TABLESAMPLE SYSTEM (p) REPEATABLE (seed)` |
| mysql, mariadb | random primary-key ranges | `WHERE (k BETWEEN a AND b OR …)` |
| snowflake | row Bernoulli | `SAMPLE BERNOULLI (p)` |
| bigquery | blocks | `TABLESAMPLE SYSTEM (p PERCENT)` |
| clickhouse | sampling key | `SAMPLE f` (a fraction; the table needs `SAMPLE BY`) |
| trino | row Bernoulli | `TABLESAMPLE BERNOULLI (p)` |
| anything else | ORDER BY random() LIMIT n, or a streamed reservoir | — |

Every method gives each window row the same inclusion probability, so the draws and
the population estimate stay unbiased; the fallback is exact and costs a window scan.
"""

from dataclasses import dataclass
from enum import StrEnum


class SamplingKind(StrEnum):
    """Where the random choice happens."""

    PAGES = "pages"  # Postgres TABLESAMPLE SYSTEM, rows thinned within pages
    KEY_RANGES = "key_ranges"  # random primary-key ranges (MySQL, MariaDB)
    CLAUSE = "clause"  # the dialect's own SAMPLE / TABLESAMPLE clause
    ORDER_BY_RANDOM = "order_by_random"  # a scan of the window, sorted by random()
    RESERVOIR = "reservoir"  # the window streamed to us, a reservoir kept


@dataclass(frozen=True, slots=True)
class DialectSampling:
    """What one dialect offers for drawing rows, and how to say it."""

    dialect: str
    kind: SamplingKind
    description: str
    # The dialect's random() in [0, 1) (or a random sort key), for the fallback.
    random_function: str | None = "random()"

    def sample_clause(self, percent: float, seed: int) -> str:
        """The clause after the table name that keeps about `percent` % of its rows."""
        p = _percent_text(percent)
        if self.dialect == "postgresql":
            return f"TABLESAMPLE SYSTEM ({p}) REPEATABLE ({seed})"
        if self.dialect == "snowflake":
            # Snowflake takes a seed only for block sampling; rows are drawn unseeded.
            return f"SAMPLE BERNOULLI ({p})"
        if self.dialect == "bigquery":
            return f"TABLESAMPLE SYSTEM ({p} PERCENT)"
        if self.dialect == "clickhouse":
            return f"SAMPLE {_percent_text(percent / 100.0)}"
        if self.dialect == "trino":
            return f"TABLESAMPLE BERNOULLI ({p})"
        raise ValueError(f"{self.dialect} has no sampling clause")


def _percent_text(value: float) -> str:
    """A plain decimal (no exponent: not every dialect reads 1e-05)."""
    text = f"{min(max(value, 0.0), 100.0):.10f}".rstrip("0").rstrip(".")
    return text or "0"


_KNOWN: dict[str, DialectSampling] = {
    d.dialect: d
    for d in (
        DialectSampling(
            "postgresql",
            SamplingKind.PAGES,
            "TABLESAMPLE SYSTEM (pages), rows thinned within each page",
        ),
        DialectSampling(
            "mysql",
            SamplingKind.KEY_RANGES,
            "random primary-key ranges (no TABLESAMPLE in MySQL)",
            "RAND()",
        ),
        DialectSampling(
            "mariadb",
            SamplingKind.KEY_RANGES,
            "random primary-key ranges (no TABLESAMPLE in MariaDB)",
            "RAND()",
        ),
        DialectSampling("snowflake", SamplingKind.CLAUSE, "SAMPLE BERNOULLI (rows)", "RANDOM()"),
        DialectSampling("bigquery", SamplingKind.CLAUSE, "TABLESAMPLE SYSTEM (blocks)", "RAND()"),
        DialectSampling(
            "clickhouse", SamplingKind.CLAUSE, "SAMPLE (the table's sampling key)", "rand()"
        ),
        DialectSampling("trino", SamplingKind.CLAUSE, "TABLESAMPLE BERNOULLI (rows)"),
        DialectSampling("sqlite", SamplingKind.ORDER_BY_RANDOM, "ORDER BY random() LIMIT n"),
        DialectSampling("duckdb", SamplingKind.ORDER_BY_RANDOM, "ORDER BY random() LIMIT n"),
    )
}


def sampling_for(dialect: str) -> DialectSampling:
    """The sampling a dialect offers; unknown ones stream the window into a reservoir."""
    known = _KNOWN.get(dialect)
    if known is not None:
        return known
    return DialectSampling(
        dialect,
        SamplingKind.RESERVOIR,
        "window streamed and sampled here (no known sampling in this dialect)",
        None,
    )


def key_range_predicate(column: str, ranges: list[tuple[int, int]]) -> str:
    """`column` within any of the inclusive `ranges` (points become an IN list)."""
    if not ranges:
        return "1 = 0"
    if all(lo == hi for lo, hi in ranges):
        return f"{column} IN ({', '.join(str(lo) for lo, _ in ranges)})"
    parts = [f"{column} BETWEEN {lo} AND {hi}" for lo, hi in ranges]
    return "(" + " OR ".join(parts) + ")"
