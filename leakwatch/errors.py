"""Errors a user sees: each carries a message that says what to do, and an exit code."""


class LeakwatchError(Exception):
    """A command failed for a reason the user can act on (exit 1)."""

    exit_code = 1


class UsageProblem(LeakwatchError):
    """Bad usage: wrong arguments or an unusable configuration (exit 2)."""

    exit_code = 2
