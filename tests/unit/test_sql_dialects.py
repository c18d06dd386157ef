"""Each warehouse's documented sampling syntax, as the SQL source writes it."""

import pytest

from leakwatch.sources.sql_dialects import SamplingKind, key_range_predicate, sampling_for


@pytest.mark.parametrize(
    ("dialect", "clause"),
    [
        ("postgresql", "TABLESAMPLE SYSTEM (2.5) REPEATABLE (42)"),
        ("snowflake", "SAMPLE BERNOULLI (2.5)"),
        ("bigquery", "TABLESAMPLE SYSTEM (2.5 PERCENT)"),
        ("clickhouse", "SAMPLE 0.025"),
        ("trino", "TABLESAMPLE BERNOULLI (2.5)"),
    ],
)
def test_sample_clauses(dialect: str, clause: str) -> None:
    assert sampling_for(dialect).sample_clause(2.5, 42) == clause


def test_small_percentages_are_written_without_an_exponent() -> None:
    assert sampling_for("trino").sample_clause(0.00001, 1) == "TABLESAMPLE BERNOULLI (0.00001)"
    assert sampling_for("clickhouse").sample_clause(0.0005, 1) == "SAMPLE 0.000005"


@pytest.mark.parametrize(
    ("dialect", "kind", "random_function"),
    [
        ("postgresql", SamplingKind.PAGES, "random()"),
        ("mysql", SamplingKind.KEY_RANGES, "RAND()"),
        ("mariadb", SamplingKind.KEY_RANGES, "RAND()"),
        ("snowflake", SamplingKind.CLAUSE, "RANDOM()"),
        ("bigquery", SamplingKind.CLAUSE, "RAND()"),
        ("clickhouse", SamplingKind.CLAUSE, "rand()"),
        ("trino", SamplingKind.CLAUSE, "random()"),
        ("sqlite", SamplingKind.ORDER_BY_RANDOM, "random()"),
        ("mssql", SamplingKind.RESERVOIR, None),
        ("oracle", SamplingKind.RESERVOIR, None),
    ],
)
def test_each_dialect_has_its_method(
    dialect: str, kind: SamplingKind, random_function: str | None
) -> None:
    sampling = sampling_for(dialect)
    assert sampling.kind is kind
    assert sampling.random_function == random_function
    assert sampling.description


def test_dialects_without_a_clause_refuse_to_write_one() -> None:
    with pytest.raises(ValueError, match="no sampling clause"):
        sampling_for("mysql").sample_clause(1.0, 1)


def test_key_ranges_become_between_or_an_in_list() -> None:
    assert key_range_predicate("`id`", [(3, 3), (9, 9)]) == "`id` IN (3, 9)"
    assert key_range_predicate("`id`", [(3, 5), (9, 9)]) == (
        "(`id` BETWEEN 3 AND 5 OR `id` BETWEEN 9 AND 9)"
    )
    assert key_range_predicate("`id`", []) == "1 = 0"


def test_sources_names_the_dialect_and_its_sampling(tmp_path: object) -> None:
    from leakwatch.sources.specs import SqlSourceSpec
    from leakwatch.sources.sql import SqlSource

    source = SqlSource(SqlSourceSpec(name="w", url="sqlite://", table="usage_events"))
    described = source.describe()
    source.engine.dispose()
    assert (described.kind, described.storage, described.location) == (
        "sql",
        "sqlite",
        "usage_events",
    )
    assert described.sampling == "ORDER BY random() LIMIT n"
