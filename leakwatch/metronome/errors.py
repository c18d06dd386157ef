"""What can go wrong talking to Metronome, as a small exception tree.

    MetronomeError
    ├── TokenRejected       401/403: the bearer token is wrong or lacks rights; never retried
    ├── IngestRejected      400 on ingest: the batch is invalid; retrying cannot help
    ├── MalformedResponse   a body that is not the documented shape (raised by parse.py)
    └── RequestFailed       a request that still failed after its bounded retries

Messages carry statuses, reasons and URLs, never request headers, so no token can leak
through an exception. The branch hangs under `LeakwatchError` (leakwatch/errors.py): a
Metronome failure that reaches the command line is something the user can act on.
"""

from leakwatch.errors import LeakwatchError


class MetronomeError(LeakwatchError):
    """Base of every error the Metronome edge raises."""


class TokenRejected(MetronomeError):
    """Metronome refused the bearer token (401 or 403)."""

    def __init__(self, status_code: int, message: str = "") -> None:
        self.status_code = status_code
        detail = f": {message}" if message else ""
        super().__init__(f"Metronome rejected the bearer token (HTTP {status_code}){detail}")


class IngestRejected(MetronomeError):
    """Metronome answered 400 to an ingest batch."""

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(f"Metronome rejected the ingest batch: {message}")


class MalformedResponse(MetronomeError):
    """The body was not what the contract says (not JSON, not an array, a bad item)."""


class RequestFailed(MetronomeError):
    """A request kept failing after every retry it was allowed."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)
