"""The error tree: every leakwatch exception is a LeakwatchError; the CLI says which are bugs."""

import importlib
import inspect
import pkgutil

import pytest
import typer

import leakwatch
from leakwatch import cli
from leakwatch.errors import ConfigError, LeakwatchError, StoreError, UsageProblem
from leakwatch.metronome.errors import RequestFailed

# The simulator stands in for Metronome; its errors never reach a leakwatch user.
# Signals caught inside their own room, never raised past it (named so a new one is seen).
CAUGHT_WHERE_RAISED = {
    # The JSONL source turns it into a source warning (`leakwatch sources`).
    "leakwatch.sources.readers.InflateLimitExceeded",
}
OUTSIDE_THE_TREE = ("leakwatch.simulator", "leakwatch.migrations", "leakwatch.__main__")


def _leakwatch_exceptions() -> list[type[BaseException]]:
    found: list[type[BaseException]] = []
    for info in pkgutil.walk_packages(leakwatch.__path__, "leakwatch."):
        if info.name.startswith(OUTSIDE_THE_TREE):
            continue
        module = importlib.import_module(info.name)
        for _, value in inspect.getmembers(module, inspect.isclass):
            if issubclass(value, BaseException) and value.__module__ == info.name:
                found.append(value)
    return found


def test_every_exception_leakwatch_raises_hangs_under_leakwatch_error() -> None:
    found = _leakwatch_exceptions()
    assert ConfigError in found and StoreError in found and RequestFailed in found
    outside = {
        f"{e.__module__}.{e.__qualname__}" for e in found if not issubclass(e, LeakwatchError)
    }
    assert outside == CAUGHT_WHERE_RAISED


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (LeakwatchError("the store is away"), 1),
        (UsageProblem("--week: no such week"), 2),
        (ConfigError(["checks.every: too short"]), 2),
        (RequestFailed("search failed after 4 retries"), 1),
    ],
)
def test_a_user_error_exits_with_its_code_and_message(
    error: LeakwatchError, code: int, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(typer.Exit) as stopped, cli._user_errors():
        raise error
    assert stopped.value.exit_code == code
    err = capsys.readouterr().err
    assert "error: " + str(error).splitlines()[0] in err
    assert "bug" not in err


def test_anything_else_is_a_bug_and_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(typer.Exit) as stopped, cli._user_errors():
        raise ValueError("an invariant broke")
    assert stopped.value.exit_code == 1
    err = capsys.readouterr().err
    assert "unexpected ValueError: an invariant broke" in err
    assert "this is a bug in leakwatch" in err
