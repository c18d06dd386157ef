"""The Metronome usage client: rate-limited event search, and ingest for the demo.

Does I/O (HTTP through an injected or owned `httpx.Client`; time and sleep through
the injected `Clock`). The search endpoint is heavily rate-limited, so every call
carries up to `max_ids_per_request` IDs and is paced by `AdaptiveRate` (multiplicative
decrease on 429, additive recovery per second of success once 429s stop).
Calls are retried a bounded number of times on 5xx, timeouts, dropped connections
and malformed bodies. A lookup that failed is reported as an error for its IDs —
never as "absent".
"""

import json
import math
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from types import TracebackType
from typing import Any, Protocol, TypeVar
from urllib.parse import urlencode

import httpx
import structlog

from leakwatch.clock import Clock
from leakwatch.core.durations import retry_after_s
from leakwatch.core.events import SearchItem, SourceEvent, format_timestamp
from leakwatch.core.reconcile import UsageAggregate
from leakwatch.metronome.errors import (
    IngestRejected,
    MalformedResponse,
    RequestFailed,
    TokenRejected,
)
from leakwatch.metronome.parse import parse_search_body, parse_usage_page

SEARCH_PATH = "/v1/events/search"
INGEST_PATH = "/v1/ingest"
USAGE_PATH = "/v1/usage"
T = TypeVar("T")
MAX_USAGE_PAGES = 10_000
MAX_INGEST_BATCH = 100
MAX_RETRY_AFTER_S = 60.0
BACKOFF_BASE_S = 0.5
BACKOFF_CAP_S = 8.0
USER_AGENT = "leakwatch"


class SearchObserver(Protocol):
    """What the client reports as it works; the daemon turns it into Prometheus metrics."""

    def on_call(self, status: str, latency_s: float) -> None:
        """One HTTP call ended: `status` is the HTTP code, or timeout/connection_error."""

    def on_retry(self, reason: str) -> None:
        """A failed call is about to be retried."""

    def on_rate_limited(self, wait_s: float) -> None:
        """The server answered 429; the client waits `wait_s` and slows down."""

    def on_failed(self, reason: str, id_count: int) -> None:
        """A request failed for good; its `id_count` IDs are errors."""


class NullSearchObserver:
    """Observe nothing."""

    def on_call(self, status: str, latency_s: float) -> None:
        pass

    def on_retry(self, reason: str) -> None:
        pass

    def on_rate_limited(self, wait_s: float) -> None:
        pass

    def on_failed(self, reason: str, id_count: int) -> None:
        pass


@dataclass
class SearchStats:
    """Running counters over the client's life (plain data, cheap to export)."""

    calls: int = 0
    ok: int = 0
    rate_limited: int = 0
    server_errors: int = 0
    client_errors: int = 0
    timeouts: int = 0
    connection_errors: int = 0
    malformed: int = 0
    retries: int = 0
    failed_requests: int = 0
    # Batches left unanswered at the deadline or budget after failed attempts: a
    # lookup that could not be made because Metronome kept failing, not for lack of time.
    batches_abandoned: int = 0
    # Attempts that failed in a retryable way (5xx, timeout, connection, malformed).
    failed_attempts: int = 0
    last_failure: str = ""
    ids_requested: int = 0
    ids_answered: int = 0
    ids_failed: int = 0
    latency_s_total: float = 0.0
    rate_limit_wait_s_total: float = 0.0
    current_rate_rps: float = 0.0


@dataclass(frozen=True)
class SearchResult:
    """What one `search` call learnt, per transaction id; three disjoint sets.

    `answered`: looked up, with the items found (an empty tuple means Metronome holds
    nothing under that id). `errors`: the lookup failed for good (a reason string) —
    say nothing about presence. `not_looked_up`: the deadline or request budget ran
    out first; ask again later.
    """

    answered: Mapping[str, tuple[SearchItem, ...]] = field(default_factory=dict)
    errors: Mapping[str, str] = field(default_factory=dict)
    not_looked_up: tuple[str, ...] = ()
    requests: int = 0

    def items_for(self, transaction_id: str) -> tuple[SearchItem, ...]:
        """Items for an answered id; KeyError for an id that was not answered."""
        return self.answered[transaction_id]

    @property
    def complete(self) -> bool:
        return not self.errors and not self.not_looked_up


class AdaptiveRate:
    """Pace calls at the budget; back off on 429 like TCP, and win the budget back in seconds.

    A 429 multiplies the rate by `decrease_factor` and blocks until the server's
    `Retry-After`: multiplicative decrease. For `quiet_s` after that window, each
    successful call grows the rate by `increase_per_success` only — a gentle probe, so
    a budget still shared with another client is not hammered. Once that long has
    passed without a 429, the rate climbs by `max_rps / recovery_s` every second
    (additive increase) back to `max_rps`: a budget a competitor gave up is back in a
    few seconds, not after hundreds of calls. Slots are scheduled (GCRA) at the rate
    in force when they fall due, so per-call overhead does not erode the rate and a
    slot booked at a low rate comes sooner as the rate climbs; the burst is one call.
    """

    def __init__(
        self,
        max_rps: float,
        clock: Clock,
        *,
        decrease_factor: float = 0.6,
        increase_per_success: float = 0.003,
        quiet_s: float = 6.0,
        recovery_s: float = 3.0,
        min_rps: float | None = None,
    ) -> None:
        if max_rps <= 0:
            raise ValueError("requests_per_second must be positive")
        if not 0 < decrease_factor < 1:
            raise ValueError("decrease_factor must be between 0 and 1")
        if increase_per_success <= 0 or quiet_s < 0 or recovery_s <= 0:
            raise ValueError("increase_per_success and recovery_s must be positive")
        self.max_rps = max_rps
        self.min_rps = min_rps if min_rps is not None else max_rps / 20
        self.decrease_factor = decrease_factor
        self.increase_per_success = increase_per_success
        self.quiet_s = quiet_s
        self.recovery_s = recovery_s
        self._clock = clock
        # The rate is `_base_rps` as of `_base_at`, plus the additive climb since then
        # once the quiet spell (from `_quiet_from`) has begun.
        self._base_rps = max_rps
        self._base_at = clock.monotonic()
        self._quiet_from = -math.inf
        self._last_slot: float | None = None
        self._not_before = clock.monotonic()

    def rate_at(self, monotonic: float) -> float:
        """The pacing rate at a moment, given no 429 until then."""
        climb_from = max(self._base_at, self._quiet_from)
        if monotonic <= climb_from:
            return self._base_rps
        climbed = self.max_rps / self.recovery_s * (monotonic - climb_from)
        return min(self.max_rps, self._base_rps + climbed)

    @property
    def rate_rps(self) -> float:
        return self.rate_at(self._clock.monotonic())

    def next_slot_monotonic(self) -> float:
        now = self._clock.monotonic()
        if self._last_slot is None:
            return max(now, self._not_before)
        # The earliest t with (t - last_slot) · rate(t) >= 1: both factors only grow
        # with t, so bisect between now and the slot today's rate would give.
        last = self._last_slot
        low, high = max(now, last), max(now, last + 1 / self.rate_at(now))
        for _ in range(40):
            if high - low <= 1e-6:
                break
            middle = (low + high) / 2
            if (middle - last) * self.rate_at(middle) >= 1:
                high = middle
            else:
                low = middle
        return max(high, self._not_before)

    def acquire(self, deadline_monotonic: float | None = None) -> bool:
        """Sleep until the next slot and take it; False (no sleep) if it is past the deadline."""
        slot = self.next_slot_monotonic()
        if deadline_monotonic is not None and slot > deadline_monotonic:
            return False
        self._clock.sleep(slot - self._clock.monotonic())
        self._last_slot = slot
        return True

    def on_success(self) -> None:
        now = self._clock.monotonic()
        if now < self._quiet_from:
            self._rebase(min(self.max_rps, self.rate_at(now) * (1 + self.increase_per_success)))

    def on_rate_limited(self, wait_s: float) -> None:
        now = self._clock.monotonic()
        self._rebase(max(self.min_rps, self.rate_at(now) * self.decrease_factor))
        self._not_before = max(self._not_before, now + wait_s)
        # Probing gently until the server's window has passed and a quiet spell after it.
        self._quiet_from = now + wait_s + self.quiet_s

    def _rebase(self, rate_rps: float) -> None:
        self._base_rps = rate_rps
        self._base_at = self._clock.monotonic()


class _CallKind(StrEnum):
    OK = "ok"
    RATE_LIMITED = "rate_limited"
    AUTH = "auth"
    RETRYABLE = "retryable"
    FATAL = "fatal"


@dataclass(frozen=True)
class _CallResult:
    kind: _CallKind
    status: str
    reason: str = ""
    items: tuple[SearchItem, ...] = ()
    retry_after_s: float | None = None
    http_status: int = 0
    message: str = ""


def _error_message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except (ValueError, RecursionError):
        return ""
    message = body.get("message") if isinstance(body, dict) else None
    return str(message)[:300] if message else ""


def _dedupe(ids: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(ids))


class SearchClient:
    """Look transaction ids up with `POST /v1/events/search`, within a rate budget.

    Not thread-safe: one client paces one stream of calls (the daemon runs one checker).
    """

    def __init__(
        self,
        *,
        base_url: str,
        token: str,
        clock: Clock,
        requests_per_second: float,
        max_ids_per_request: int = 100,
        timeout_s: float = 10,
        max_retries: int = 4,
        max_rate_limited_waits: int = 8,
        http: httpx.Client | None = None,
        rng: random.Random | None = None,
        observer: SearchObserver | None = None,
        rate: AdaptiveRate | None = None,
        usage_requests_per_second: float = 1.0,
    ) -> None:
        if max_ids_per_request < 1:
            raise ValueError("max_ids_per_request must be at least 1")
        if not token:
            raise ValueError("a Metronome bearer token is required")
        self.base_url = base_url.rstrip("/")
        self._token = token
        self._clock = clock
        self.max_ids_per_request = max_ids_per_request
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.max_rate_limited_waits = max_rate_limited_waits
        self._owns_http = http is None
        self._http = http if http is not None else httpx.Client(timeout=timeout_s)
        self._rng = rng or random.Random()
        self._observer: SearchObserver = observer or NullSearchObserver()
        self.rate = rate or AdaptiveRate(requests_per_second, clock)
        # /v1/usage has its own limit; paging through it never spends the search budget.
        self.usage_rate = AdaptiveRate(usage_requests_per_second, clock)
        self.stats = SearchStats(current_rate_rps=self.rate.rate_rps)

    def __repr__(self) -> str:
        return (
            f"SearchClient(base_url={self.base_url!r}, "
            f"requests_per_second={self.rate.max_rps}, "
            f"max_ids_per_request={self.max_ids_per_request}, token=<redacted>)"
        )

    def close(self) -> None:
        """Close the HTTP client if this client created it."""
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> "SearchClient":
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- search ----------------------------------------------------------------------

    def search(
        self,
        transaction_ids: Iterable[str],
        *,
        deadline_monotonic: float | None = None,
        max_requests: int | None = None,
    ) -> SearchResult:
        """Look every id up, `max_ids_per_request` at a time.

        Stops early when the clock's monotonic time would pass `deadline_monotonic` or
        when `max_requests` HTTP calls (retries included) are spent; ids not finished
        by then come back in `not_looked_up`. Raises TokenRejected on 401/403 at once.
        """
        ids = _dedupe(transaction_ids)
        answered: dict[str, tuple[SearchItem, ...]] = {}
        errors: dict[str, str] = {}
        not_looked_up: list[str] = []
        requests = 0
        for start in range(0, len(ids), self.max_ids_per_request):
            batch = ids[start : start + self.max_ids_per_request]
            budget = None if max_requests is None else max_requests - requests
            outcome, used = self._search_batch(batch, deadline_monotonic, budget)
            requests += used
            if isinstance(outcome, str):
                errors.update(dict.fromkeys(batch, outcome))
            elif outcome is None:
                not_looked_up.extend(ids[start:])
                break
            else:
                grouped: dict[str, list[SearchItem]] = {txn: [] for txn in batch}
                for item in outcome:
                    if item.transaction_id in grouped:
                        grouped[item.transaction_id].append(item)
                answered.update({txn: tuple(items) for txn, items in grouped.items()})
        return SearchResult(
            answered=answered,
            errors=errors,
            not_looked_up=tuple(not_looked_up),
            requests=requests,
        )

    def _search_batch(
        self, batch: Sequence[str], deadline_monotonic: float | None, budget: int | None
    ) -> tuple[tuple[SearchItem, ...] | str | None, int]:
        """Run one batch to an end: (items | error reason | None = not looked up, calls)."""
        log = structlog.get_logger()
        failures = 0
        rate_limited = 0
        calls = 0
        while True:
            if (budget is not None and calls >= budget) or not self.rate.acquire(
                deadline_monotonic
            ):
                self.stats.batches_abandoned += int(failures > 0)
                return None, calls
            calls += 1
            result = self._call_search(batch, attempt=failures + rate_limited)
            if result.kind is _CallKind.OK:
                self.rate.on_success()
                self.stats.current_rate_rps = self.rate.rate_rps
                self.stats.ids_answered += len(batch)
                return result.items, calls
            if result.kind is _CallKind.AUTH:
                raise TokenRejected(result.http_status, result.message)
            if result.kind is _CallKind.RATE_LIMITED:
                rate_limited += 1
                if rate_limited > self.max_rate_limited_waits:
                    # Rate limiting says nothing about the ids: never an `error`. They
                    # stay due (new samples pending) for the next cycle.
                    log.warning("search.rate_limited_out", times=rate_limited, ids=len(batch))
                    return None, calls
                wait_s = result.retry_after_s
                if wait_s is None:
                    wait_s = self._backoff_s(rate_limited - 1)
                self.rate.on_rate_limited(wait_s)
                self.stats.rate_limited += 1
                self.stats.rate_limit_wait_s_total += wait_s
                self.stats.current_rate_rps = self.rate.rate_rps
                self._observer.on_rate_limited(wait_s)
                log.warning(
                    "search.rate_limited",
                    wait_s=round(wait_s, 3),
                    rate_rps=round(self.rate.rate_rps, 3),
                    ids=len(batch),
                )
                continue
            if result.kind is _CallKind.FATAL:
                return self._fail(batch, result.reason), calls
            failures += 1
            self.stats.failed_attempts += 1
            self.stats.last_failure = result.reason
            if failures > self.max_retries:
                reason = f"{result.reason} (gave up after {failures} attempts)"
                return self._fail(batch, reason), calls
            backoff_s = self._backoff_s(failures - 1)
            if result.retry_after_s is not None:
                backoff_s = max(backoff_s, result.retry_after_s)
            if (
                deadline_monotonic is not None
                and self._clock.monotonic() + backoff_s > deadline_monotonic
            ):
                self.stats.batches_abandoned += 1
                return None, calls
            self.stats.retries += 1
            self._observer.on_retry(result.reason)
            log.info(
                "search.retry",
                reason=result.reason,
                attempt=failures,
                backoff_s=round(backoff_s, 3),
                ids=len(batch),
            )
            self._clock.sleep(backoff_s)

    def _fail(self, batch: Sequence[str], reason: str) -> str:
        self.stats.failed_requests += 1
        self.stats.ids_failed += len(batch)
        self._observer.on_failed(reason, len(batch))
        structlog.get_logger().error("search.failed", reason=reason, ids=len(batch))
        return reason

    def _backoff_s(self, attempt: int) -> float:
        """Full jitter: uniform in [0, min(cap, base · 2^attempt)]."""
        return self._rng.uniform(0, min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2**attempt))

    def _headers(self) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {self._token}",
            "Content-Type": "application/json",
            "Accept": "application/json",
            "User-Agent": USER_AGENT,
        }

    def _post(self, path: str, body: Any) -> tuple[httpx.Response | None, str, float]:
        """POST once; (response or None, status label, latency) — never raises httpx errors."""
        payload = json.dumps(body, separators=(",", ":")).encode("utf-8")
        started = self._clock.monotonic()
        try:
            response = self._http.post(
                self.base_url + path,
                content=payload,
                headers=self._headers(),
                timeout=self.timeout_s,
            )
            status = str(response.status_code)
        except httpx.TimeoutException:
            response, status = None, "timeout"
        except httpx.RequestError as err:
            # Transport failures, and bodies that cannot be decoded (a broken
            # Content-Encoding from a proxy): retried, never raised to the cycle.
            response, status = None, f"connection_error:{type(err).__name__}"
        return response, status, self._clock.monotonic() - started

    def _call_search(self, batch: Sequence[str], *, attempt: int) -> _CallResult:
        response, status, latency_s = self._post(SEARCH_PATH, {"transactionIds": list(batch)})
        self.stats.calls += 1
        self.stats.ids_requested += len(batch)
        self.stats.latency_s_total += latency_s
        result = self._classify(response, status)
        label = "malformed" if result.status == "malformed" else status.split(":", 1)[0]
        self._observer.on_call(label, latency_s)
        structlog.get_logger().info(
            "search.call",
            status=label,
            latency_s=round(latency_s, 4),
            ids=len(batch),
            attempt=attempt,
            items=len(result.items),
        )
        return result

    def _classify(self, response: httpx.Response | None, status: str) -> _CallResult:
        if response is None:
            if status == "timeout":
                self.stats.timeouts += 1
                return _CallResult(
                    _CallKind.RETRYABLE, status, f"timed out waiting for {self.base_url}"
                )
            self.stats.connection_errors += 1
            kind = status.split(":", 1)[1]
            return _CallResult(
                _CallKind.RETRYABLE, status, f"connection error ({kind}) to {self.base_url}"
            )
        code = response.status_code
        if code == 200:
            try:
                items = parse_search_body(response.content)
            except MalformedResponse as err:
                self.stats.malformed += 1
                return _CallResult(_CallKind.RETRYABLE, "malformed", f"malformed answer: {err}")
            self.stats.ok += 1
            return _CallResult(_CallKind.OK, status, items=tuple(items), http_status=code)
        message = _error_message(response)
        if code in (401, 403):
            self.stats.client_errors += 1
            return _CallResult(_CallKind.AUTH, status, http_status=code, message=message)
        if code == 429:
            return _CallResult(
                _CallKind.RATE_LIMITED,
                status,
                retry_after_s=retry_after_s(response.headers, MAX_RETRY_AFTER_S),
                http_status=code,
            )
        if code >= 500 or code in (408, 409):
            self.stats.server_errors += 1
            return _CallResult(
                _CallKind.RETRYABLE,
                status,
                f"HTTP {code}",
                retry_after_s=retry_after_s(response.headers, MAX_RETRY_AFTER_S),
                http_status=code,
            )
        self.stats.client_errors += 1
        detail = f": {message}" if message else ""
        return _CallResult(_CallKind.FATAL, status, f"HTTP {code}{detail}", http_status=code)

    # -- usage aggregates ------------------------------------------------------------

    def fetch_usage(
        self,
        *,
        starting_on: datetime,
        ending_before: datetime,
        window_size: str = "DAY",
        customer_ids: Sequence[str] | None = None,
        metric_ids: Sequence[str] | None = None,
    ) -> list[UsageAggregate]:
        """Every row of `POST /v1/usage` for the period, following `next_page` to the end.

        Paced by its own rate, retried like search (bounded, jittered; 429 honoured).
        Raises TokenRejected on 401/403 and RequestFailed when a page keeps failing:
        a partial answer would read as a gap, so there is none.
        """
        body: dict[str, Any] = {
            "starting_on": format_timestamp(starting_on),
            "ending_before": format_timestamp(ending_before),
            "window_size": window_size,
        }
        if customer_ids is not None:
            body["customer_ids"] = list(customer_ids)
        if metric_ids is not None:
            body["billable_metrics"] = [{"id": metric_id} for metric_id in metric_ids]
        rows: list[UsageAggregate] = []
        next_page: str | None = None
        for _ in range(MAX_USAGE_PAGES):
            page, next_page = self._usage_page(body, next_page)
            rows.extend(page)
            if next_page is None:
                return rows
        raise RequestFailed(f"usage: still more pages after {MAX_USAGE_PAGES}")

    def _usage_page(
        self, body: Mapping[str, Any], next_page: str | None
    ) -> tuple[list[UsageAggregate], str | None]:
        path = USAGE_PATH
        if next_page is not None:
            path += "?" + urlencode({"next_page": next_page})
        return self._post_until_answered(
            "usage",
            path,
            body,
            lambda response: parse_usage_page(response.content),
            rate=self.usage_rate,
        )

    def _post_until_answered(
        self,
        name: str,
        path: str,
        body: Any,
        parse: Callable[[httpx.Response], T],
        *,
        rate: AdaptiveRate | None,
    ) -> T:
        """POST until a 200 parses: the retry discipline of usage and ingest calls.

        401/403 raise TokenRejected and other 4xx RequestFailed (400 on ingest:
        IngestRejected); 429 waits out Retry-After (slowing `rate` when paced);
        5xx, timeouts, dropped connections and malformed bodies are retried with
        jittered backoff, then raise RequestFailed.
        """
        log = structlog.get_logger()
        failures = rate_limited = 0
        while True:
            if rate is not None:
                rate.acquire()
            response, status, latency_s = self._post(path, body)
            log.info(f"{name}.call", status=status, latency_s=round(latency_s, 4))
            code = response.status_code if response is not None else 0
            reason = status
            if response is not None and code == 200:
                try:
                    answer = parse(response)
                except MalformedResponse as err:
                    reason = f"malformed answer: {err}"
                else:
                    if rate is not None:
                        rate.on_success()
                    return answer
            elif response is not None and code in (401, 403):
                raise TokenRejected(code, _error_message(response))
            elif response is not None and code == 400 and path == INGEST_PATH:
                raise IngestRejected(_error_message(response) or "HTTP 400")
            elif response is not None and code == 429:
                rate_limited += 1
                if rate_limited > self.max_rate_limited_waits:
                    raise RequestFailed(f"{name} rate limited {rate_limited} times in a row")
                wait_s = retry_after_s(response.headers, MAX_RETRY_AFTER_S)
                if wait_s is None:
                    wait_s = self._backoff_s(rate_limited - 1)
                if rate is not None:
                    rate.on_rate_limited(wait_s)
                else:
                    self._clock.sleep(wait_s)
                continue
            elif response is not None and code < 500 and code not in (408, 409):
                raise RequestFailed(f"{name} answered HTTP {code}: {_error_message(response)}")
            failures += 1
            if failures > self.max_retries:
                raise RequestFailed(f"{name} failed: {reason} (gave up after {failures} attempts)")
            log.info(f"{name}.retry", reason=reason, attempt=failures)
            self._clock.sleep(self._backoff_s(failures - 1))

    # -- ingest ----------------------------------------------------------------------

    def ingest(self, events: Iterable[SourceEvent | Mapping[str, Any]]) -> int:
        """Send events to `POST /v1/ingest` in batches of 100; return how many were sent.

        Not paced by the search budget (ingest is a high-throughput endpoint), but
        honours 429 and retries transient failures like search. A retried batch may
        arrive twice; Metronome's dedup makes that harmless.
        """
        bodies = [e.to_ingest_json() if isinstance(e, SourceEvent) else dict(e) for e in events]
        for start in range(0, len(bodies), MAX_INGEST_BATCH):
            self._ingest_batch(bodies[start : start + MAX_INGEST_BATCH])
        return len(bodies)

    def _ingest_batch(self, batch: list[dict[str, Any]]) -> None:
        self._post_until_answered("ingest", INGEST_PATH, batch, lambda response: None, rate=None)
