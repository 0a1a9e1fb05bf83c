"""Log records whose arguments cannot forge a log line.

Exception messages, task names, ids and other strings that come from tasks or messages are
logged as arguments of a fixed format string. A newline in one would start what looks like a new
log line (a forged record), and terminal escape sequences could hide or rewrite text. Every
djworker logger escapes control characters in its string and exception arguments (``\\n`` is
logged as the two characters ``\\`` ``n``); the format strings themselves are djworker's own.
A traceback (``exc_info``) keeps its lines, but the exception messages in it are escaped the same
way, so only the traceback's own structure spans lines.
"""

from __future__ import annotations

import logging
import re
import traceback
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


_CONTROL_BUT_NEWLINE = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029]")


def format_traceback(exc: BaseException) -> str:
    """The traceback of ``exc`` (and the exceptions chained to it), messages escaped."""
    formatted = traceback.TracebackException.from_exception(exc)
    pending, seen = [formatted], set()
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        # The message as the traceback module renders it (a private attribute, as of 3.11).
        if isinstance(getattr(current, "_str", None), str):
            current._str = escape_control(current._str)  # type: ignore[attr-defined]
        pending.extend(e for e in (current.__cause__, current.__context__) if e is not None)
    text = "".join(formatted.format()).rstrip("\n")
    return _CONTROL_BUT_NEWLINE.sub(lambda m: escape_control(m.group()), text)


class EscapeControlCharacters(logging.Filter):
    """Rewrites a record's arguments, and its traceback, before any handler formats it."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(_safe(arg) for arg in record.args)
        elif isinstance(record.args, dict):
            record.args = {key: _safe(value) for key, value in record.args.items()}
        exc = record.exc_info[1] if isinstance(record.exc_info, tuple) else None
        if exc is not None and not record.exc_text:
            # Formatters use exc_text when it is set, instead of formatting exc_info again.
            record.exc_text = format_traceback(exc)
        return True


_FILTER = EscapeControlCharacters()


def get_logger(name: str) -> logging.Logger:
    """``logging.getLogger(name)`` with the escaping filter (a filter acts only on records
    logged through its own logger, so each module's logger gets it)."""
    logger = logging.getLogger(name)
    if _FILTER not in logger.filters:
        logger.addFilter(_FILTER)
    return logger
