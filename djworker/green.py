"""Monkey-patching for the green pools, done before anything else is imported.

gevent and eventlet must patch the standard library before Django, psycopg or kombu import
``socket``, ``threading`` and friends: a module that imported the unpatched ``threading`` keeps
real locks that block the whole process. ``manage.py`` and ``python -m djworker`` call
``patch_if_requested(sys.argv)`` first thing; it reads only argv and the environment.

A project's own ``manage.py`` does not know about this. When ``runworker`` finds that it needs
a green pool in a process nobody patched (the pool may even come from a worker profile), it
starts itself again through ``python -m djworker`` with ``DJWORKER_PATCH`` naming the pool
(``reexec_patched``), so any ``manage.py`` works.
"""

from __future__ import annotations

import os
import sys

# The registry and the green libraries import neither Django nor gevent/eventlet (a test checks).
from djworker.concurrency.green_library import GreenLibrary
from djworker.concurrency.registry import GREEN_POOLS, POOLS

#: the pools a green library patches the process for, by every alias
GREEN = GREEN_POOLS
#: set for a worker started again by ``reexec_patched``: the pool to patch for
PATCH_ENV = "DJWORKER_PATCH"
#: the green pool this process patched for, if any
patched: str | None = None
#: the library that patched it (how to run work in a real OS thread), if any
patched_library: GreenLibrary | None = None
#: modules that must not be imported before patching (checked, and warned about, when they are)
PATCH_SENSITIVE = ("django.db", "psycopg", "kombu", "redis", "amqp")


def requested_green_pool(argv: list[str], environ: dict[str, str] | None = None) -> str | None:
    """The green pool named by ``--pool``/``-P`` in a ``runworker`` command line, if any.

    Like the command itself, the command line wins over ``DJWORKER_POOL``.
    """
    if "runworker" not in argv:
        return None
    env = os.environ if environ is None else environ
    if env.get(PATCH_ENV) in GREEN:
        return env[PATCH_ENV]
    pool = env.get("DJWORKER_POOL", "")
    args = argv[argv.index("runworker") + 1 :]
    for i, arg in enumerate(args):
        if arg == "--":
            break
        if arg in ("--pool", "-P") and i + 1 < len(args):
            pool = args[i + 1]
        elif arg.startswith("--pool="):
            pool = arg.split("=", 1)[1]
        elif arg.startswith("-P") and len(arg) > 2:
            pool = arg[2:].lstrip("=")
    return pool if pool in GREEN else None


def patch_if_requested(argv: list[str]) -> str | None:
    """Patch for the green pool named on the command line; return its name (or None).

    A missing gevent/eventlet package is not an error here: runworker resolves the pool
    later and names the extra to install.
    """
    global patched, patched_library
    pool = requested_green_pool(argv)
    if pool is None or patched == pool:
        return patched
    early = sorted(m for m in PATCH_SENSITIVE if m in sys.modules)
    library = POOLS[pool].green
    assert library is not None  # requested_green_pool names green pools only
    if not library.patch():
        return None
    patched, patched_library = pool, library
    if early:
        sys.stderr.write(
            f"djworker: warning: {', '.join(early)} imported before {pool} patched the standard "
            "library; call djworker.green.patch_if_requested(sys.argv) before anything else\n"
        )
    return pool


def reexec_patched(pool: str, argv: list[str]) -> None:
    """Replace this process with ``python -m djworker runworker ...`` patched for ``pool``.

    ``argv`` is this process's command line (``manage.py runworker ...``). The directory of
    ``manage.py`` is put on ``PYTHONPATH`` so the project stays importable from any directory.
    """
    if os.environ.get(PATCH_ENV):
        from djworker.exceptions import ConfigurationError

        raise ConfigurationError(
            f"the worker was started again for {pool}, but {pool} could not patch the process"
        )
    exec_worker(argv, patch_for=pool)


def exec_worker(argv: list[str], *, patch_for: str | None) -> None:
    """Replace this process with ``python -m djworker runworker ...`` (same arguments).

    ``patch_for`` names the green pool the new process patches for first, or None for an
    unpatched process (a worker leaving a green pool for another kind).
    """
    args = argv[argv.index("runworker") :] if "runworker" in argv else ["runworker"]
    env = {k: v for k, v in os.environ.items() if k != PATCH_ENV}
    if patch_for is not None:
        env[PATCH_ENV] = patch_for
    if argv and argv[0] and os.path.basename(argv[0]) != "__main__.py":
        script_dir = os.path.dirname(os.path.abspath(argv[0]))
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [script_dir, env.get("PYTHONPATH")]))
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, "-m", "djworker", *args], env)
