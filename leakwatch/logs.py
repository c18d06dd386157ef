"""Structured logging: JSON lines off a terminal, readable console on one. Writes to stderr.

Secrets are redacted by a processor that every event passes through, whatever the
field is called: values of secret-looking keys, bearer tokens, Slack tokens and
webhook URLs inside any string.
"""

import logging
import re
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any, TextIO

import structlog

REDACTED = "[redacted]"
_SECRET_KEY = re.compile(r"token|secret|password|authorization|webhook|api_key", re.IGNORECASE)
_SECRET_TEXT = [
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=\-]+"),
    re.compile(r"xox[abposr]-[A-Za-z0-9\-]+"),
    re.compile(r"https://hooks\.slack\.com/[^\s\"']+"),
    re.compile(r"(?i)(://[^:/\s]+:)[^@/\s]+(@)"),
]


class SecretRedactor:
    """A structlog processor that removes secrets, including ones known by value."""

    def __init__(self, known_secrets: Iterable[str] = ()) -> None:
        self._known = sorted({s for s in known_secrets if s and len(s) >= 6}, key=len, reverse=True)

    def add(self, secret: str | None) -> None:
        if secret and len(secret) >= 6 and secret not in self._known:
            self._known = sorted([*self._known, secret], key=len, reverse=True)

    def redact_text(self, text: str) -> str:
        for secret in self._known:
            text = text.replace(secret, REDACTED)
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
        processors.append(structlog.dev.ConsoleRenderer(colors=out.isatty()))
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
        ),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=False,
    )
    return redactor
