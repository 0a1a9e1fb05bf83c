"""Log records whose arguments cannot forge a log line.

Exception messages, task names, ids and other strings that come from tasks or messages are
logged as arguments of a fixed format string. A newline in one would start what looks like a new
log line (a forged record), and terminal escape sequences could hide or rewrite text. Every
djworker logger escapes control characters in its string and exception arguments (``\\n`` is
logged as the two characters ``\\`` ``n``); the format strings themselves are djworker's own.
Tracebacks (``exc_info``) are left as they are: they span lines by nature.
"""

from __future__ import annotations

import logging
import re
from typing import Any

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def escape_control(text: str) -> str:
    """``text`` with every control character written as an escape, so it stays on one line."""
    return _CONTROL.sub(lambda m: _NAMED.get(m.group(), f"\\x{ord(m.group()):02x}"), text)


def _safe(value: Any) -> Any:
    if isinstance(value, str):
        return escape_control(value)
    if isinstance(value, BaseException):
        return escape_control(str(value))
    return value


class EscapeControlCharacters(logging.Filter):
    """Rewrites a record's arguments before any handler formats it."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(_safe(arg) for arg in record.args)
        elif isinstance(record.args, dict):
            record.args = {key: _safe(value) for key, value in record.args.items()}
        return True


_FILTER = EscapeControlCharacters()


def get_logger(name: str) -> logging.Logger:
    """``logging.getLogger(name)`` with the escaping filter (a filter acts only on records
    logged through its own logger, so each module's logger gets it)."""
    logger = logging.getLogger(name)
    if _FILTER not in logger.filters:
        logger.addFilter(_FILTER)
    return logger
