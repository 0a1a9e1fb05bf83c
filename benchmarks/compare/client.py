"""The publishing side of a run, in a process of its own per run (``python -m ...client``).

Each implementation needs its own Django settings or app in the process that publishes, so the
runner starts this client with the implementation's environment and talks to it one JSON line
at a time on stdin/stdout:

* ``{"op": "publish", "count": N, "ids": PATH}``: N no-op calls one at a time, the way an
  application calls them (``.delay()``, ``.enqueue()``, huey's call); their ids go to PATH.
* ``{"op": "bulk", "count": N}``: the same N no-ops through the implementation's bulk API, if
  it has one (answers ``{"unsupported": true}`` otherwise).
* ``{"op": "probe", "count": K, "rate": R, "key": KEY, "ids": PATH}``: K latency probes paced
  at R per second, each carrying the wall-clock time read just before its call.

Every answer carries ``seconds``, the time the calls took in this process.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

Call = Callable[..., str]


def load(name: str) -> tuple[Call, Call, Callable[[int], None] | None]:
    """(no-op call, probe call, bulk publish of N no-ops or None) for implementation ``name``."""
    if name == "huey":
        from benchmarks.peers import huey_app

        return (lambda: huey_app.noop().id, lambda key, at: huey_app.probe(key, at).id, None)
    import django

    django.setup()  # Celery's django-db result backend needs Django's models too
    queue = os.environ["DJWORKER_BENCH_QUEUE"]
    if name == "celery":
        from benchmarks.peers import celery_app

        def celery_bulk(count: int) -> None:
            from celery import group

            group(celery_app.noop.s() for _ in range(count)).apply_async(queue=queue)

        return (
            lambda: celery_app.noop.apply_async(queue=queue).id,
            lambda key, at: celery_app.probe.apply_async((key, at), queue=queue).id,
            celery_bulk,
        )
    from benchmarks.peers import tasks

    if name == "django-tasks-db":
        noop = tasks.tasksdb_noop.using(queue_name=queue)
        probe = tasks.tasksdb_probe.using(queue_name=queue)
        return (lambda: noop.enqueue().id, lambda key, at: probe.enqueue(key, at).id, None)
    if name == "djworker-django-tasks":
        noop = tasks.framework_noop.using(queue_name=queue)
        probe = tasks.framework_probe.using(queue_name=queue)
        return (lambda: noop.enqueue().id, lambda key, at: probe.enqueue(key, at).id, None)
    return (
        lambda: tasks.noop.apply_async(queue=queue).id,
        lambda key, at: tasks.probe.apply_async((key, at), queue=queue).id,
        djworker_bulk(tasks.noop, queue),
    )


def djworker_bulk(task: Any, queue: str) -> Callable[[int], None] | None:
    """``task.enqueue_many``, where this version of djworker has it (a ``--baseline`` may not)."""
    if not hasattr(task, "enqueue_many"):
        return None
    return lambda count: task.enqueue_many([()] * count, queue=queue)


def main() -> None:
    call, probe, bulk = load(sys.argv[1])
    for line in sys.stdin:
        try:
            answer = serve(json.loads(line), call, probe, bulk)
        except Exception as exc:
            # Answer, so the runner fails the run at once; the traceback goes to the log.
            traceback.print_exc()
            answer = {"error": f"the client failed: {exc!r}"}
        print(json.dumps(answer), flush=True)


def serve(
    request: dict[str, Any], call: Call, probe: Call, bulk: Callable[[int], None] | None
) -> dict[str, Any]:
    started = time.perf_counter()
    answer: dict[str, Any] = {}
    if request["op"] == "publish":
        ids = [call() for _ in range(request["count"])]
        answer["seconds"] = time.perf_counter() - started
        Path(request["ids"]).write_text("\n".join(ids))
        if "djworker" in sys.modules:  # which djworker ran: the checkout's or a baseline's
            answer["djworker_from"] = str(Path(sys.modules["djworker"].__file__ or "").parent)
    elif request["op"] == "bulk":
        if bulk is None:
            answer["unsupported"] = True
        else:
            bulk(request["count"])
            answer["seconds"] = time.perf_counter() - started
    elif request["op"] == "probe":
        interval = 1 / request["rate"]
        probe_ids = []
        for index in range(request["count"]):
            pause = started + index * interval - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
            probe_ids.append(probe(request["key"], time.time()))
        answer["seconds"] = time.perf_counter() - started
        Path(request["ids"]).write_text("\n".join(probe_ids))
    else:
        answer["error"] = f"unknown op {request['op']!r}; use publish, bulk or probe"
    return answer


if __name__ == "__main__":
    main()
