"""What one application did on a PostgreSQL server, read from the server's own log.

The private cluster of the counting tests logs every statement and every new session
(``SERVER_SETTINGS``), each line prefixed with its session's id and ``application_name``. A
worker started with an ``application_name`` of its own (``tests/settings_prefork.py``) is then
told apart from everything else, its pool processes included, and nothing inside the worker
is instrumented: what is counted is what reached the server.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

#: settings of the private cluster (applied with ALTER SYSTEM and a reload)
SERVER_SETTINGS = {
    "log_line_prefix": "@@%c|%a@@ ",
    "log_connections": "on",
    "log_statement": "all",
}

_RECORD = re.compile(r"^@@(?P<session>[^|]*)\|(?P<app>[^@]*)@@ (?P<level>[A-Z]+):  (?P<text>.*)$")
_STATEMENT = re.compile(r"^(?:statement|execute [^:]*): (?P<sql>.*)$")
_AUTHORIZED = re.compile(r"^connection authorized: .*application_name=(?P<app>\S+)")


@dataclass
class Activity:
    """The statements and new sessions of one application in a stretch of the log."""

    #: (session id, SQL) in the order the server logged them
    statements: list[tuple[str, str]] = field(default_factory=list)
    sessions_opened: set[str] = field(default_factory=set)

    def touching(self, table: str) -> list[str]:
        return [sql for _, sql in self.statements if table in sql]


def read(path: Path, *, start: int, end: int, application: str) -> Activity:
    """The activity of ``application`` between byte offsets ``start`` and ``end`` of ``path``."""
    with open(path, "rb") as log:
        log.seek(start)
        text = log.read(end - start).decode(errors="replace")
    activity = Activity()
    continuing = ""  # the session whose statement the next tab-indented line continues
    for line in text.splitlines():
        if line.startswith("\t") and activity.statements:
            # A statement's next line: the server indents it with a tab.
            session, sql = activity.statements[-1]
            if session != continuing:
                continue
            activity.statements[-1] = (session, f"{sql} {line.strip()}".strip())
            continue
        continuing = ""
        record = _RECORD.match(line)
        if record is None or record["level"] != "LOG":
            continue  # a DETAIL line
        authorized = _AUTHORIZED.match(record["text"])
        if authorized is not None:
            if authorized["app"] == application:
                activity.sessions_opened.add(record["session"])
            continue
        statement = _STATEMENT.match(record["text"])
        if statement is not None and record["app"] == application:
            activity.statements.append((record["session"], statement["sql"]))
            continuing = record["session"]
    return activity
