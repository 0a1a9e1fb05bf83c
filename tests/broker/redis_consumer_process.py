"""A consumer on djworker's Redis transport in a process of its own, for tests of two workers.

``python -m tests.broker.redis_consumer_process URL drain QUEUE PREFETCH``: print ``ready``,
wait for a line on stdin, then take and ack messages until the queue stays empty for a second,
and print the ``n`` of every body taken as one JSON list.

``python -m tests.broker.redis_consumer_process URL hold QUEUE PREFETCH``: print ``ready``, take
``PREFETCH`` messages in one batch, print their bodies as one JSON list, and keep them
unacknowledged until killed.
"""

from __future__ import annotations

import json
import sys
import time

import django


def main(argv: list[str]) -> None:
    django.setup()
    from kombu import Connection, Exchange, Queue

    from djworker.transport.redis import Transport

    url, mode, queue_name, prefetch = argv[0], argv[1], argv[2], int(argv[3])
    options = {"priority_steps": list(range(10))}
    with Connection(url, transport=Transport, transport_options=options) as connection:
        taken: list[object] = []
        held = []

        def on_message(body: dict[str, object], message: object) -> None:
            taken.append(body if mode == "hold" else body["n"])
            held.append(message)

        queue = Queue(queue_name, Exchange(""), routing_key=queue_name)
        with connection.Consumer(queue, callbacks=[on_message]) as consumer:
            consumer.qos(prefetch_count=prefetch)
            print("ready", flush=True)
            if mode == "drain":
                sys.stdin.readline()
                while True:
                    try:
                        connection.drain_events(timeout=1.0)
                    except TimeoutError:
                        break
                    while held:
                        held.pop().ack()  # type: ignore[attr-defined]
                print(json.dumps(taken), flush=True)
            elif mode == "hold":
                while len(taken) < prefetch:
                    connection.drain_events(timeout=10)
                print(json.dumps(taken), flush=True)
                time.sleep(60)
            else:
                raise SystemExit(f"mode must be drain or hold; got {mode!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
