"""The one error tree: every failure a user can act on is a `LeakwatchError`.

    LeakwatchError               exit 1: a command could not do its job; the message says why
    ├── UsageProblem             exit 2: wrong arguments, or a configuration that cannot be used
    │   └── ConfigError          the config file or environment has problems (`problems`)
    ├── StoreError               the store cannot be used: unreachable, schema not current
    ├── UnknownAlertError        no alert by that name (and scope) exists yet
    ├── AnotherInstanceRunning   another daemon or check holds the store's lock (daemon/leader.py)
    ├── AlertEvaluationFailed    some alert rules could not be evaluated (pipeline/alert.py)
    ├── ObjectStoreError         object storage cannot be listed or read (sources/objects.py)
    ├── SqlSourceError           a SQL source's database cannot be queried (sources/sql.py)
    └── MetronomeError           the Metronome edge (metronome/errors.py draws its branch)
        ├── TokenRejected        401/403: the bearer token is wrong or lacks rights
        ├── IngestRejected       400 on ingest: the batch is invalid
        ├── MalformedResponse    a body that is not the documented shape
        └── RequestFailed        a request that still failed after its bounded retries

The classes live next to the code that raises them where they belong to one room (the
Metronome branch, the leader's lock, the alert stage, the sources, whose two errors are
OSErrors too so a cycle reports them like an unreadable file); the rest are defined here.
`cli.py` prints a `LeakwatchError` as `error: <message>` and exits with its `exit_code`.
Anything else that reaches the command line is a bug in leakwatch and says so: no code
raises a bare `ValueError` (or `LookupError`, `KeyError`) for something a user typed.
A signal caught inside the room that raises it (the gzip reader's inflate limit, which
the JSONL source turns into a source warning) is no part of the tree; tests/unit/
test_errors.py names each.
"""


class LeakwatchError(Exception):
    """A command failed for a reason the user can act on (exit 1)."""

    exit_code = 1


class UsageProblem(LeakwatchError):
    """Bad usage: wrong arguments or an unusable configuration (exit 2)."""

    exit_code = 2


class ConfigError(UsageProblem):
    """The configuration cannot be used; `problems` says where and how to fix it."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid configuration:\n" + "\n".join(f"  - {p}" for p in problems))


class StoreError(LeakwatchError):
    """The store cannot be used as configured (bad URL, unreachable, not migrated)."""


class UnknownAlertError(LeakwatchError):
    """No alert by that name (and scope) exists yet."""
