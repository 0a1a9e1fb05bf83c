"""The fault suite's side channel counts each real run once, across pools."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.faults.conftest import ExecutionLog
from tests.integration.harness import WorkerProcess, unique_queue, wait_for

pytestmark = [
    pytest.mark.faults,
    pytest.mark.smoke,
    pytest.mark.integration,
    pytest.mark.django_db(transaction=True),
]


@pytest.mark.parametrize("pool", ["threads", "prefork"])
def test_every_run_is_counted_once_from_the_side_channel(
    pool: str,
    redis_url: str,
    use_broker: Callable[..., object],
    worker_factory: Callable[..., WorkerProcess],
    execution_log: ExecutionLog,
) -> None:
    from tests.taskapp import fault_tasks

    use_broker(redis_url)
    queue = unique_queue()
    worker_factory(
        "--pool", pool, "-c", "2", "-Q", queue, broker_url=redis_url, env=execution_log.env
    )
    keys = [f"k{i}" for i in range(20)]
    for key in keys:
        fault_tasks.run.apply_async((key,), queue=queue)
    wait_for(lambda: not execution_log.lost(keys), what="every key to run")
    assert execution_log.duplicated() == {}
    assert len({pid for _, pid in execution_log.runs()}) >= 1
