"""Run pytest inside a gevent- or eventlet-patched process: ``python -m tests.green.run gevent``.

The patch comes first, before pytest, Django or psycopg are imported, exactly as
``manage.py runworker --pool=gevent`` does it. Extra arguments go to pytest (default:
``tests/green``). ``scripts/test-green`` runs it once per green library.
"""

from __future__ import annotations

import os
import sys


def main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[1] not in ("gevent", "eventlet"):
        sys.stderr.write("usage: python -m tests.green.run gevent|eventlet [pytest args]\n")
        return 2
    library = argv[1]
    from djworker.green import patch_if_requested

    if patch_if_requested(["runworker", f"--pool={library}"]) != library:
        sys.stderr.write(f"{library} is not installed: pip install 'djworker[{library}]'\n")
        return 2
    os.environ["DJWORKER_TEST_GREEN"] = library
    import pytest

    return int(pytest.main(argv[2:] or ["tests/green"]))


if __name__ == "__main__":
    sys.exit(main(sys.argv))
