"""``rediss://`` runs on djworker's Redis transport over TLS, against a real TLS redis-server.

The server is private: its own port (``DJWORKER_FAULT_REDIS_PORTS``), a self-signed certificate
made for the test, no persistence.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kombu import Exchange, Queue

from djworker.broker import Broker
from djworker.transport.redis import Transport
from tests.faults.servers import free_port
from tests.integration.harness import wait_for


@pytest.fixture
def tls_redis(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """(port, CA certificate) of a redis-server that speaks TLS only."""
    redis_server, openssl = shutil.which("redis-server"), shutil.which("openssl")
    if redis_server is None or openssl is None:
        pytest.skip("needs redis-server and openssl")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            *(openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1"),
            *("-addext", "subjectAltName=IP:127.0.0.1"),
        ],
        check=True,
        capture_output=True,
    )
    port = free_port("DJWORKER_FAULT_REDIS_PORTS")
    server = subprocess.Popen(
        [
            # no plain port: only a TLS client gets an answer
            *(redis_server, "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1"),
            *("--tls-cert-file", str(cert), "--tls-key-file", str(key)),
            *("--tls-ca-cert-file", str(cert), "--tls-auth-clients", "no"),
            *("--save", "", "--appendonly", "no", "--dir", str(tmp_path)),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    try:

        def answers() -> bool:
            with socket.socket() as probe:
                return probe.connect_ex(("127.0.0.1", port)) == 0

        wait_for(answers, timeout_s=20, what=f"the TLS redis-server on {port}")
        yield port, cert
    finally:
        server.terminate()
        server.wait(10)


def test_a_rediss_broker_publishes_and_consumes_over_tls_through_djworkers_transport(
    tls_redis: tuple[int, Path],
) -> None:
    port, cert = tls_redis
    url = f"rediss://127.0.0.1:{port}/0?ssl_cert_reqs=required&ssl_ca_certs={cert}"
    broker = Broker(url=url)
    queue = Queue("rediss-test", Exchange(""), routing_key="rediss-test")
    received: list[Any] = []
    with broker.connection() as connection:
        assert connection.get_transport_cls() is Transport
        connection.Producer().publish(
            {"over": "tls"}, routing_key="rediss-test", declare=[queue], priority=3
        )

        def on_message(body: Any, message: Any) -> None:
            received.append(body)
            message.ack()

        with connection.Consumer(queue, callbacks=[on_message], prefetch_count=4):
            connection.drain_events(timeout=5)
    assert received == [{"over": "tls"}]
