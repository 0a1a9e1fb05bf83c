"""A ``django://`` consumer in a process of its own, for tests that need a second worker.

``python -m tests.broker.consumer_process drain QUEUE [PREFETCH]``: print ``ready``, wait for a
line on stdin, then take and ack messages until the queue stays empty for a second, and print
the ``n`` of every body taken as one JSON list. With ``PREFETCH`` the consumer claims up to that
many messages per claim; without, one at a time.

``python -m tests.broker.consumer_process hold QUEUE VISIBILITY_TIMEOUT_S``: print ``ready``,
take one message, print its body as JSON, and keep it unacknowledged until killed.
"""

from __future__ import annotations

import json
import sys
import time

import django


def main(argv: list[str]) -> None:
    django.setup()
    from kombu import Exchange, Queue

    from djworker.broker_schemes import BrokerConnection

    mode, queue_name = argv[0], argv[1]
    options = {"visibility_timeout": float(argv[2])} if mode == "hold" else {}
    with BrokerConnection("django://", transport_options=options) as connection:
        queue = connection.SimpleQueue(Queue(queue_name, Exchange(""), routing_key=queue_name))
        if mode == "drain" and len(argv) > 2:
            queue.consumer.qos(prefetch_count=int(argv[2]))
        print("ready", flush=True)
        if mode == "drain":
            sys.stdin.readline()
            taken = []
            while True:
                try:
                    message = queue.get(timeout=1.0)
                except queue.Empty:
                    break
                taken.append(message.payload["n"])
                message.ack()
            print(json.dumps(taken), flush=True)
        elif mode == "hold":
            message = queue.get(timeout=10)
            print(json.dumps(message.payload), flush=True)
            time.sleep(60)
        else:
            raise SystemExit(f"mode must be drain or hold; got {mode!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
