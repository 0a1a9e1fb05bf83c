"""``python -m djworker runworker ...``: patch for a green pool first, then run the command.

The settings module comes from ``DJANGO_SETTINGS_MODULE``; there is no default, because
guessing a project's settings would run the wrong one silently.
"""

from __future__ import annotations

import os
import sys

USAGE = (
    "usage: DJANGO_SETTINGS_MODULE=myproject.settings python -m djworker runworker [options]\n"
    "       (python -m djworker runworker --help lists the options)\n"
)


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv if argv is None else argv)
    # Before anything that could import Django, psycopg or kombu.
    from djworker.green import patch_if_requested

    patch_if_requested(args)
    if len(args) < 2 or args[1] != "runworker":
        got = args[1] if len(args) > 1 else "nothing"
        sys.stderr.write(f"python -m djworker runs one command, runworker; got {got!r}\n{USAGE}")
        return 2
    if not os.environ.get("DJANGO_SETTINGS_MODULE"):
        sys.stderr.write(f"DJANGO_SETTINGS_MODULE is not set; name your settings module\n{USAGE}")
        return 2
    from django.core.management import execute_from_command_line

    execute_from_command_line(["python -m djworker", *args[1:]])
    return 0


if __name__ == "__main__":
    sys.exit(main())
