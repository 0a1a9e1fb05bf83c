"""Choosing a pool on the command line: custom pools, refused classes, missing extras."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from djworker.result import AsyncResult
from tests.integration.harness import WorkerProcess, unique_queue
from tests.taskapp import tasks

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_a_custom_pool_given_by_dotted_path_runs_tasks(
    worker_factory: Callable[..., WorkerProcess], redis_url: str, use_broker: Callable[..., object]
) -> None:
    queue = unique_queue()
    use_broker(redis_url)
    worker = worker_factory(
        "--pool=example_project.pools:ExecutorPool", "-c", "2", "-Q", queue, broker_url=redis_url
    )
    assert AsyncResult(tasks.add.apply_async((20, 22), queue=queue).id).get(timeout=20) == 42
    assert "pool:        example_project.pools:ExecutorPool" in worker.output


def test_a_pool_added_in_one_file_of_the_project_runs_tasks_when_named_by_dotted_path(
    worker_factory: Callable[..., WorkerProcess], redis_url: str, use_broker: Callable[..., object]
) -> None:
    """example_project/pools.py:LoggingThreadPool, a threads pool subclass that logs each job."""
    queue = unique_queue()
    use_broker(redis_url)
    worker = worker_factory(
        "--pool=example_project.pools:LoggingThreadPool",
        "-c",
        "2",
        "-Q",
        queue,
        broker_url=redis_url,
    )
    result = tasks.add.apply_async((40, 2), queue=queue)
    assert AsyncResult(result.id).get(timeout=20) == 42
    assert "pool:        example_project.pools:LoggingThreadPool" in worker.output
    worker.wait_for_output(f"example pool: task=tests.taskapp.tasks.add id={result.id} handed")


def test_pool_custom_takes_the_class_from_the_environment(
    worker_factory: Callable[..., WorkerProcess], redis_url: str, use_broker: Callable[..., object]
) -> None:
    queue = unique_queue()
    use_broker(redis_url)
    worker_factory(
        "--pool=custom",
        "-Q",
        queue,
        broker_url=redis_url,
        env={"DJWORKER_CUSTOM_POOL": "example_project.pools:ExecutorPool"},
    )
    assert AsyncResult(tasks.add.apply_async((1, 2), queue=queue).id).get(timeout=20) == 3


@pytest.mark.parametrize(
    ("pool", "expected"),
    [
        ("tests.contract.broken_pools:NotAPool", "must be a subclass of"),
        ("tests.contract.broken_pools:HalfPool", "missing busy, stop"),
        ("tests.contract.broken_pools:NoSuchPool", "has no pool class 'NoSuchPool'"),
    ],
)
def test_a_class_that_is_not_a_pool_is_refused_with_what_is_missing(
    worker_factory: Callable[..., WorkerProcess], pool: str, expected: str
) -> None:
    worker = worker_factory(f"--pool={pool}", wait_ready=False)
    assert worker.wait(30) != 0
    assert expected in worker.output
    assert pool.split(":")[1] in worker.output


@pytest.mark.parametrize(
    ("pool", "library", "requirement"),
    [
        ("gevent", "gevent", "djworker[gevent]"),
        ("eventlet", "eventlet", "djworker[eventlet]"),
        ("prefork", "billiard", "billiard"),
        ("processes", "billiard", "billiard"),
    ],
)
def test_a_missing_library_names_what_to_install_and_the_choices(
    worker_factory: Callable[..., WorkerProcess],
    tmp_path: Path,
    pool: str,
    library: str,
    requirement: str,
) -> None:
    # A stand-in that fails to import the way an absent package does.
    (tmp_path / f"{library}.py").write_text(
        f"raise ModuleNotFoundError(\"No module named '{library}'\", name={library!r})\n"
    )
    worker = worker_factory(f"--pool={pool}", wait_ready=False, env={"PYTHONPATH": str(tmp_path)})
    assert worker.wait(30) != 0
    assert f"pip install '{requirement}', or choose one of solo, threads" in worker.output
    assert "Traceback" not in worker.output
