"""Structured logging: JSON lines off a terminal, readable console on one. Writes to stderr.

Secrets are redacted by a processor that every event passes through, whatever the
field is called: values of secret-looking keys, bearer tokens, Slack tokens, webhook
URLs, URL and conninfo passwords inside any string, and every secret known by value —
then once more on the rendered line, where it may be URL-encoded, escaped or wrapped.
"""

import json
import logging
import re
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any, TextIO
from urllib.parse import quote, quote_plus

import structlog

from leakwatch.core.text import keep_lines

REDACTED = "[redacted]"
_SECRET_KEY = re.compile(r"token|secret|password|authorization|webhook|api_key", re.IGNORECASE)
# Secrets recognised by shape. Each keeps group 1 (and 2) and loses what lies between.
_SECRET_TEXT = [
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=\-]+"),
    re.compile(r"xox[abposre]-[A-Za-z0-9\-]+"),
    # A webhook with or without its scheme, and URL-encoded (in a query or a form body).
    re.compile(r"(?i)(?:https?://)?hooks\.slack\.com/[^\s\"'<>]+"),
    re.compile(r"(?i)(?:https?%3A%2F%2F)?hooks\.slack\.com%2F[^\s\"'<>&]+"),
    # user:password@ in any URL, and password= / "password": in conninfo, DSNs, reprs.
    re.compile(r"(?i)(://[^:/\s]+:)[^@/\s]+(@)"),
    re.compile(r"(?i)(password[\"']?\s*[:=]\s*[\"']?)[^\s\"'&,;}]+"),
]
# What may come between two characters of a secret once rendered: a line break (real,
# or escaped by a JSON or repr renderer) and the indentation of the next line.
_BREAK = r"(?:(?:\r|\n|\\r|\\n)+[ \t]*)?"
MIN_SECRET_CHARS = 6


def _secret_forms(secret: str) -> set[str]:
    """A secret as it may appear in text: as is, URL-encoded, and JSON-escaped."""
    return {
        secret,
        quote(secret, safe=""),
        quote_plus(secret, safe=""),
        json.dumps(secret)[1:-1],
    }


class SecretRedactor:
    """A structlog processor that removes secrets, including ones known by value.

    It runs twice per event: on the fields (so a secret-named key is blanked whatever
    its value) and on the rendered line (`redact_rendered`), where a renderer may have
    URL-encoded, escaped or wrapped what the fields held.
    """

    def __init__(self, known_secrets: Iterable[str] = ()) -> None:
        self._known: list[str] = []
        self._patterns: list[re.Pattern[str]] = []
        for secret in known_secrets:
            self.add(secret)

    def add(self, secret: str | None) -> None:
        """Redact `secret` wherever it appears (ignored when shorter than 6 characters)."""
        if not secret or len(secret) < MIN_SECRET_CHARS or secret in self._known:
            return
        self._known.append(secret)
        for form in sorted(_secret_forms(secret), key=len, reverse=True):
            self._patterns.append(re.compile(_BREAK.join(re.escape(c) for c in form)))
        self._patterns.sort(key=lambda p: len(p.pattern), reverse=True)

    def redact_text(self, text: str) -> str:
        for known in self._patterns:
            text = known.sub(REDACTED, text)
        for pattern in _SECRET_TEXT:
            text = pattern.sub(
                lambda m: (
                    (m.group(1) if m.groups() else "")
                    + REDACTED
                    + (m.group(2) if len(m.groups()) > 1 else "")
                ),
                text,
            )
        return text

    def redact_rendered(self, _logger: Any, _method: str, rendered: Any) -> Any:
        """The last processor: redact the line exactly as it will be written."""
        return self.redact_text(rendered) if isinstance(rendered, str) else rendered

    def _clean(self, key: str, value: Any) -> Any:
        if isinstance(value, str):
            if _SECRET_KEY.search(key) and not key.endswith(("_count", "_total")):
                return REDACTED
            return self.redact_text(value)
        if isinstance(value, dict):
            return {k: self._clean(str(k), v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self._clean(key, v) for v in value]
        return value

    def __call__(
        self, _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        for key in list(event_dict):
            event_dict[key] = self._clean(key, event_dict[key])
        return event_dict


def _terminal_safe(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Drop control characters (ESC, C1, bidi overrides) from string fields; keep lines."""
    for key, value in event_dict.items():
        if isinstance(value, str):
            event_dict[key] = keep_lines(value)
    return event_dict


def redactor_in_use() -> SecretRedactor | None:
    """The redactor `configure_logging` installed in this process, if any.

    Messages printed outside logging (the CLI's errors) go through the same one, so
    they know the same secrets.
    """
    for processor in structlog.get_config().get("processors", []):
        if isinstance(processor, SecretRedactor):
            return processor
    return None


def configure_logging(
    *,
    level: str = "info",
    json: bool | None = None,
    stream: TextIO | None = None,
    redactor: SecretRedactor | None = None,
) -> SecretRedactor:
    """Set up structlog once per process; returns the redactor so secrets can be added."""
    out = stream or sys.stderr
    use_json = not out.isatty() if json is None else json
    redactor = redactor or SecretRedactor()
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        redactor,
    ]
    if use_json:
        processors.append(structlog.processors.JSONRenderer(default=str))
    else:
        # JSON escapes control characters itself; the console prints strings as they are.
        processors.append(_terminal_safe)
        processors.append(structlog.dev.ConsoleRenderer(colors=out.isatty()))
    processors.append(redactor.redact_rendered)
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
        ),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=False,
    )
    return redactor
