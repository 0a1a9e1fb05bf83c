"""The prefork pool's fork server: the one process every pool process is forked from.

The worker forks it once, when the pool starts. At that moment the worker's main thread has just
closed its database connections and no other worker thread has started, so the fork server
holds no database connection; it never opens one. Every pool process (at start-up, at each
replacement, whenever the pool grows) is forked from the fork server, never from the worker, so
no pool process is forked from a process that holds a connection, whatever the worker's own
threads (the ``django://`` transport, the control tick) are doing at that moment, and without
pausing them.

The fork server is a billiard process, and so are the pool processes it starts. It does two
things: fork a pool process when asked, and report how each one exited (a process's exit
status can only be collected by its parent).

Messages on one Unix ``SOCK_SEQPACKET`` socket pair, pickled, one per packet:

* worker -> fork server: ``("spawn", slot, options)``, with the pool process's end of its pipe
  to the worker attached (``SCM_RIGHTS``); ``("kill", pid)`` to SIGKILL a pool process and its
  process group (only the fork server knows the pid is not yet reaped, so not reused);
* fork server -> worker: ``("started", slot, pid)``, ``("failed", slot, error)`` and
  ``("exited", pid, exitcode)``.

When the worker closes its end (or dies), the fork server waits for its pool processes to exit
and exits. If the worker is killed, the kernel kills the fork server, and its pool processes
with it (``PR_SET_PDEATHSIG`` on both).
"""

from __future__ import annotations

import contextlib
import gc
import os
import pickle
import signal
import socket
import threading
from collections.abc import Callable
from multiprocessing.connection import wait
from typing import Any

from djworker.concurrency.prefork_child_handle import describe_exit, kill_group
from djworker.log_safety import get_logger

logger = get_logger(__name__)

#: the largest message either side sends (a slot and a few options, or an error text)
MAX_PACKET = 64 * 1024
#: how long the worker waits for a pool process to be forked before it calls the attempt failed
SPAWN_TIMEOUT_S = 30.0

#: runs in a new pool process: (the pool process's end of its pipe, slot, fork server pid, options)
ChildEntry = Callable[[Any, int, int, dict[str, Any]], None]


class ForkServerLost(RuntimeError):
    """The fork server exited: no pool process can be started until a new one runs."""


def _send(sock: socket.socket, message: tuple[Any, ...], fds: list[int] | None = None) -> None:
    socket.send_fds(sock, [pickle.dumps(message)], fds or [])


def _receive(sock: socket.socket) -> tuple[tuple[Any, ...], list[int]]:
    data, fds, _flags, _address = socket.recv_fds(sock, MAX_PACKET, 1)
    if not data:
        for fd in fds:
            os.close(fd)
        raise EOFError("the other end of the fork server socket is closed")
    return pickle.loads(data), fds


class ForkServer:
    """The worker's handle on its fork server (used by one thread at a time: see the pool)."""

    def __init__(self, ctx: Any, child_entry: ChildEntry) -> None:
        self._ctx = ctx
        self._child_entry = child_entry
        self._sock: socket.socket | None = None
        self._process: Any = None
        self._lock = threading.Lock()
        #: (pid, exitcode) read while waiting for something else, for ``exits`` to return
        self._exits: list[tuple[int, int | None]] = []
        #: why the fork server is gone, once it is
        self._lost: str | None = None

    @property
    def lost(self) -> str | None:
        """Why the fork server is gone (it exited), or None while it runs."""
        return self._lost

    @property
    def has_exits(self) -> bool:
        """Exits were read (while spawning) and wait for ``exits``: do not block in ``wait``."""
        return bool(self._exits)

    @property
    def pid(self) -> int | None:
        return None if self._process is None else int(self._process.pid)

    def fileno(self) -> int:
        """Readable when the fork server reports an exit (or has exited): for ``wait``."""
        assert self._sock is not None, "the fork server is not started"
        return self._sock.fileno()

    def start(self, close_in_server: Callable[[], None]) -> None:
        """Fork the fork server. The caller has closed its database connections first.

        ``close_in_server`` runs first thing in the fork server: it closes what belongs to the
        worker (pipes to pool processes of an earlier fork server, the pool's wake-up pipe).
        """
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        # Objects from before the fork stay out of the collections: fewer pages copied later.
        gc.freeze()
        process = self._ctx.Process(
            target=_serve,
            args=(theirs, ours, os.getpid(), self._child_entry, close_in_server),
            name="djworker-fork-server",
            daemon=False,  # its pool processes run tasks that may start processes of their own
        )
        try:
            process.start()
        finally:
            # The worker lives on: left frozen, the garbage cycles it holds now would never be
            # collected, and each new fork server would add more.
            gc.unfreeze()
            theirs.close()
        self._sock, self._process = ours, process
        logger.debug("fork server pid=%s started", process.pid)

    def spawn(self, slot: int, options: dict[str, Any]) -> tuple[Any, int]:
        """Have the fork server fork a pool process: the worker's end of its pipe, and its pid."""
        assert self._sock is not None, "the fork server is not started"
        parent_end, child_end = self._ctx.Pipe(duplex=True)
        try:
            with self._lock:
                try:
                    _send(self._sock, ("spawn", slot, options), [child_end.fileno()])
                except OSError as exc:
                    raise ForkServerLost(f"the fork server is gone ({exc})") from exc
                finally:
                    child_end.close()
                while True:
                    if not wait([self._sock], SPAWN_TIMEOUT_S):
                        raise ForkServerLost(
                            f"the fork server did not start a pool process in {SPAWN_TIMEOUT_S}s"
                        )
                    message = self._read_one()
                    if message[0] == "started" and message[1] == slot:
                        return parent_end, int(message[2])
                    if message[0] == "failed" and message[1] == slot:
                        raise RuntimeError(f"the fork server could not fork: {message[2]}")
        except BaseException:
            parent_end.close()
            raise

    def exits(self) -> list[tuple[int, int | None]]:
        """Every (pid, exitcode) reported since the last call, without blocking.

        Once the fork server has exited, ``lost`` says so (the exits it reported still count).
        """
        if self._sock is None or self._sock.fileno() < 0:
            return []  # not started, or closed
        with self._lock:
            with contextlib.suppress(ForkServerLost):
                while self._lost is None and wait([self._sock], 0):
                    self._read_one()
            exits, self._exits = self._exits, []
        return exits

    def kill(self, pid: int) -> None:
        """SIGKILL a pool process and its process group, if it has not exited yet."""
        if self._sock is None or self._sock.fileno() < 0:
            return
        with contextlib.suppress(OSError):  # gone: its pool processes died with it
            _send(self._sock, ("kill", pid))

    def _read_one(self) -> tuple[Any, ...]:
        assert self._sock is not None
        try:
            message, fds = _receive(self._sock)
        except (EOFError, OSError) as exc:
            self._lost = self._describe_loss()
            raise ForkServerLost(self._lost) from exc
        for fd in fds:
            os.close(fd)
        if message[0] == "exited":
            self._exits.append((int(message[1]), message[2]))
        return message

    def _describe_loss(self) -> str:
        process = self._process
        if process is not None:
            process.join(1.0)
        status = describe_exit(None if process is None else process.exitcode)
        return f"the fork server (pid {self.pid}) exited with {status}"

    def close(self, *, join_s: float) -> None:
        """Close the worker's end; the fork server exits once its pool processes have."""
        if self._sock is not None:
            with self._lock, contextlib.suppress(OSError):
                self._sock.close()
        if self._process is not None:
            self._process.join(join_s)
            if self._process.exitcode is None:
                logger.warning("fork server pid=%s did not exit; killing it", self._process.pid)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self._process.pid, signal.SIGKILL)
                self._process.join(1.0)


# -- in the fork server --------------------------------------------------------------------------


def _serve(
    sock: socket.socket,
    worker_end: socket.socket,
    worker_pid: int,
    child_entry: ChildEntry,
    close_in_server: Callable[[], None],
) -> None:
    import billiard

    from djworker.concurrency.prefork_child_main import die_with_parent, set_title

    worker_end.close()
    close_in_server()
    die_with_parent(worker_pid)
    # A signal sent to the worker's whole process group (^C in a terminal, a supervisor that
    # signals every process, systemd's default KillMode) must not take the children down with
    # the fork server: the worker decides how to stop, and the fork server goes when it does.
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGQUIT):
        signal.signal(signum, signal.SIG_IGN)
    for signum in (signal.SIGUSR1, signal.SIGCHLD):
        signal.signal(signum, signal.SIG_DFL)
    set_title("fork server")
    ctx = billiard.get_context("fork")
    children: dict[int, Any] = {}  # sentinel -> billiard process
    listening = True
    while listening or children:
        ready = wait(([sock] if listening else []) + list(children), None)
        if sock in ready:
            try:
                message, fds = _receive(sock)
            except (EOFError, OSError):
                listening = False  # the worker is done: wait for the pool processes to exit
            else:
                if message[0] == "kill":
                    if message[1] in {p.pid for p in children.values()}:
                        kill_group(message[1])
                else:
                    process = _spawn(ctx, sock, child_entry, message, fds)
                    if process is not None:
                        children[process.sentinel] = process
        for sentinel in [s for s in children if s in ready]:
            process = children.pop(sentinel)
            # Grandchildren left behind go with their parent; before the join, while the exited
            # child's pid cannot yet belong to another process.
            kill_group(process.pid)
            process.join()
            if listening:
                _reply(sock, ("exited", process.pid, process.exitcode))
    os._exit(0)  # nothing of the worker's (atexit handlers, finalisers) runs here


def _spawn(
    ctx: Any, sock: socket.socket, child_entry: ChildEntry, message: tuple[Any, ...], fds: list[int]
) -> Any:
    _, slot, options = message
    from billiard.connection import Connection

    if not fds:  # the descriptor did not arrive (out of file descriptors?)
        _reply(sock, ("failed", slot, "the pool process's pipe did not arrive"))
        return None
    conn = Connection(fds[0])
    try:
        process = ctx.Process(
            target=_child_main,
            args=(child_entry, sock, conn, slot, os.getpid(), options),
            name=f"djworker-pool-{slot}",
            daemon=False,  # tasks may start processes of their own
        )
        process.start()
    except Exception as exc:
        logger.exception("fork server could not fork pool process slot=%s", slot)
        _reply(sock, ("failed", slot, f"{type(exc).__name__}: {exc}"))
        return None
    finally:
        conn.close()
    with contextlib.suppress(OSError):
        os.setpgid(process.pid, process.pid)  # also done in the child; whichever runs first wins
    _reply(sock, ("started", slot, process.pid))
    return process


def _reply(sock: socket.socket, message: tuple[Any, ...]) -> None:
    with contextlib.suppress(OSError):  # the worker is gone: the loop reads EOF next
        _send(sock, message)


def _child_main(
    child_entry: ChildEntry,
    server_sock: socket.socket,
    conn: Any,
    slot: int,
    server_pid: int,
    options: dict[str, Any],
) -> None:
    server_sock.close()  # the fork server's socket is not the pool process's to hold open
    child_entry(conn, slot, server_pid, options)
