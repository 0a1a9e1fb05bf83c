"""Private servers for the fault suite: a redis-server and a PostgreSQL cluster of its own.

Fault tests stop, restart and crash their servers, so they never use the shared ones. Each
server here runs on a port taken from a range the environment gives
(``DJWORKER_FAULT_REDIS_PORTS=6370-6379``, ``DJWORKER_FAULT_PG_PORTS=5470-5479``; without it any
free port), keeps its files in a temporary directory, and offers the same four verbs:

* ``start()``: start (again) on the same port and directory; returns once it answers;
* ``stop()``: a clean shutdown (what a restart by an operator does first);
* ``crash()``: SIGKILL, no chance to write anything (``restart(crash=True)`` = crash + start);
* ``restart(crash=False)``: stop (or crash) and start again on the same port and directory.

``close_amqp_connections`` closes a worker's own connections on a shared RabbitMQ, which is the
one fault on RabbitMQ that disturbs nobody else.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from glob import glob
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from tests.conftest import IN_CI
from tests.integration.harness import wait_for


def require_program(name: str, path: str | None) -> str:
    """The program's path; without it skip locally and fail in CI, saying what is missing."""
    if path:
        return path
    message = f"{name} is not installed here"
    if IN_CI:
        pytest.fail(f"{message} (CI needs it for the fault suite)")
    pytest.skip(f"{message}; install it to run the fault suite")


def port_in_use(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def free_port(env_var: str) -> int:
    """A free port from the range in ``env_var`` (``LOW-HIGH``), or any free port without it."""
    spec = os.environ.get(env_var, "")
    if not spec:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return int(s.getsockname()[1])
    match = re.fullmatch(r"(\d+)-(\d+)", spec.strip())
    if match is None:
        raise ValueError(f"{env_var} expects a port range like 6370-6379; got {spec!r}")
    low, high = int(match[1]), int(match[2])
    for port in range(low, high + 1):
        if not port_in_use(port):
            return port
    raise RuntimeError(f"no free port in {env_var}={spec}: all of {low}-{high} are in use")


class PrivateRedis:
    """A redis-server on its own port and directory.

    ``persistent=False`` is redis as many install it for a cache: no RDB snapshots and no
    append-only file, so a restart empties it. ``persistent=True`` turns the append-only file on
    with ``appendfsync`` (default ``always``: every write is on disk before redis answers, the
    setting under which a crash loses no acknowledged write; ``everysec`` may lose the last
    second). With ``password`` it refuses a client that does not give it (``--requirepass``).
    """

    def __init__(
        self,
        directory: Path,
        *,
        persistent: bool = False,
        appendfsync: str = "always",
        password: str | None = None,
    ) -> None:
        self.binary = require_program("redis-server", shutil.which("redis-server"))
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self.persistent = persistent
        self.appendfsync = appendfsync
        self.password = password
        self.port = free_port("DJWORKER_FAULT_REDIS_PORTS")
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return self.url_with_password(self.password)

    def url_with_password(self, password: str | None) -> str:
        return f"redis://{f':{password}@' if password else ''}127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def command(self) -> list[str]:
        persistence = (
            ["--appendonly", "yes", "--appendfsync", self.appendfsync]
            if self.persistent
            else ["--appendonly", "no"]
        )
        return [
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.directory),
            "--save",
            "",
            *persistence,
            *(["--requirepass", self.password] if self.password else []),
            "--logfile",
            str(self.directory / "redis.log"),
        ]

    def start(self) -> PrivateRedis:
        assert not self.running, "the private redis-server is already running"
        self.process = subprocess.Popen(self.command(), stdout=subprocess.DEVNULL)
        wait_for(self._answers, timeout_s=20, what=f"the private redis-server on {self.port}")
        return self

    def _answers(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            log = (self.directory / "redis.log").read_text(errors="replace")[-2000:]
            raise AssertionError(f"redis-server exited ({self.process.returncode}):\n{log}")
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                if self.password:
                    s.sendall(f"AUTH {self.password}\r\n".encode())
                    if not s.recv(16).startswith(b"+OK"):
                        return False
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        """SIGTERM: redis finishes the append-only file (when on) and exits."""
        if self.running:
            assert self.process is not None
            self.process.terminate()
            self.process.wait(20)

    def crash(self) -> None:
        """SIGKILL: whatever redis had not written is gone."""
        if self.running:
            assert self.process is not None
            self.process.kill()
            self.process.wait(20)

    def restart(self, *, crash: bool = False) -> None:
        self.crash() if crash else self.stop()
        self.start()


def postgres_bindir() -> str | None:
    """Where initdb, pg_ctl and postgres are: next to ``initdb`` on PATH, or Debian's layout."""
    initdb = shutil.which("initdb")
    if initdb:
        return str(Path(initdb).resolve().parent)
    found = sorted(glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    return str(Path(found[-1]).parent) if found else None


class PrivatePostgres:
    """A PostgreSQL cluster of its own (initdb into a temporary directory, trust auth).

    PostgreSQL refuses to run as root, so as root (CI) every server command runs as the
    ``postgres`` user, which must be able to enter ``directory``. ``fsync=off`` keeps CI fast and
    changes nothing the suite tests: a SIGKILLed server loses what it had not handed to the
    kernel, not what sits in the page cache; the loss of the machine is not simulated here.
    """

    def __init__(self, directory: Path) -> None:
        bindir = require_program("PostgreSQL's initdb", postgres_bindir())
        self.bindir = Path(bindir)
        self.directory = directory
        self.data = directory / "data"
        self.port = free_port("DJWORKER_FAULT_PG_PORTS")
        self.as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    @property
    def host(self) -> str:
        return "127.0.0.1"

    def url(self, database: str = "postgres") -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, *command: str) -> None:
        subprocess.run(
            [*self.as_user, *command], check=True, capture_output=True, cwd=self.directory
        )

    def create(self) -> PrivatePostgres:
        self.directory.mkdir(parents=True, exist_ok=True)
        if self.as_user:
            shutil.chown(self.directory, "postgres", "postgres")
            # a temporary directory under /tmp is private to root; postgres must reach it
            for parent in self.directory.parents:
                if parent == Path("/tmp") or parent == Path(parent.anchor):
                    break
                parent.chmod(parent.stat().st_mode | 0o711)
        self._run(
            str(self.bindir / "initdb"),
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
        )
        return self

    @property
    def pid(self) -> int | None:
        """The postmaster's pid from ``postmaster.pid``, if the file is there."""
        try:
            return int((self.data / "postmaster.pid").read_text().split("\n", 1)[0])
        except (FileNotFoundError, ValueError):
            return None

    @property
    def running(self) -> bool:
        pid = self.pid
        if pid is None:
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True

    def start(self) -> PrivatePostgres:
        assert not self.running, "the private PostgreSQL is already running"
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1"
            f" -c unix_socket_directories={self.directory} -c fsync=off"
            " -c full_page_writes=off -c max_connections=200"
        )
        self._run(
            str(self.bindir / "pg_ctl"),
            "start",
            "-w",
            "-t",
            "60",
            "-D",
            str(self.data),
            "-l",
            str(self.directory / "postgres.log"),
            "-o",
            options,
        )
        wait_for(self._answers, timeout_s=30, what=f"the private PostgreSQL on {self.port}")
        return self

    def _answers(self) -> bool:
        return (
            subprocess.run(
                [str(self.bindir / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port)],
                check=False,
            ).returncode
            == 0
        )

    def stop(self) -> None:
        """A fast shutdown: clients are disconnected, everything committed is kept."""
        if self.running:
            self._run(str(self.bindir / "pg_ctl"), "stop", "-w", "-m", "fast", "-D", str(self.data))

    def crash(self) -> None:
        """SIGKILL of the postmaster and every backend, as if the server's machine died.

        ``pg_ctl`` starts the postmaster in a session of its own, so its process group holds
        exactly the server's processes. The next start runs crash recovery from the WAL.
        """
        pid = self.pid
        if pid is None or not self.running:
            return
        os.killpg(pid, signal.SIGKILL)
        wait_for(lambda: not self.running, timeout_s=20, what="the killed postmaster to go")
        # orphaned backends hold the shared memory the next postmaster needs
        wait_for(lambda: not _group_alive(pid), timeout_s=20, what="the killed backends to go")

    def restart(self, *, crash: bool = False) -> None:
        self.crash() if crash else self.stop()
        self.start()

    def sql(self, statement: str, database: str = "postgres") -> None:
        self._run(
            str(self.bindir / "psql"),
            "-h",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-U",
            "postgres",
            "-d",
            database,
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            statement,
        )

    def drop(self) -> None:
        """Stop for good and remove the cluster's files."""
        with contextlib.suppress(Exception):
            self.stop()
        if self.running:
            self.crash()
        shutil.rmtree(self.directory, ignore_errors=True)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def amqp_local_ports(pid: int, broker_port: int = 5672) -> set[int]:
    """Local TCP ports of ``pid``'s connections to ``broker_port``, read from /proc."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(FileNotFoundError), open(table) as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                local, remote, inode = fields[1], fields[2], fields[9]
                if inode in inodes and int(remote.rsplit(":", 1)[1], 16) == broker_port:
                    ports.add(int(local.rsplit(":", 1)[1], 16))
    return ports


def close_amqp_connections(pid: int, vhost: str, *, timeout_s: float = 30.0) -> int:
    """Close, on RabbitMQ, every connection of process ``pid`` to ``vhost``; how many it closed.

    Only that process's own connections are matched (by its client ports), so this is safe on a
    RabbitMQ other programs share. RabbitMQ lists a new connection a moment after it opens, so
    this retries until there was at least one to close.
    """
    rabbitmqctl = require_program("rabbitmqctl", shutil.which("rabbitmqctl"))
    deadline = time.monotonic() + timeout_s
    while True:
        ports = amqp_local_ports(pid)
        listing = subprocess.run(
            [rabbitmqctl, "-q", "list_connections", "pid", "vhost", "peer_port"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        closed = 0
        for line in listing.splitlines():
            fields = line.split("\t")
            if len(fields) != 3 or not fields[2].isdigit():
                continue  # the header line
            connection, conn_vhost, peer_port = fields
            if conn_vhost == vhost and int(peer_port) in ports:
                subprocess.run(
                    [rabbitmqctl, "-q", "close_connection", connection, "fault suite"],
                    check=True,
                    capture_output=True,
                )
                closed += 1
        if closed or time.monotonic() > deadline:
            return closed
        time.sleep(0.2)


def amqp_vhost_of(url: str) -> str:
    """The RabbitMQ vhost an ``amqp://`` URL names (``/`` when it names none)."""
    path = urlsplit(url).path
    return unquote(path[1:]) if len(path) > 1 else "/"


def amqp_queue_messages(vhost: str, queue: str) -> int:
    """Messages of ``queue`` on RabbitMQ: ready ones and delivered ones not yet acknowledged."""
    rabbitmqctl = require_program("rabbitmqctl", shutil.which("rabbitmqctl"))
    listing = subprocess.run(
        [rabbitmqctl, "-q", "list_queues", "-p", vhost, "name", "messages"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    for line in listing.splitlines():
        name, _, count = line.partition("\t")
        if name == queue:
            return int(count)
    return 0
