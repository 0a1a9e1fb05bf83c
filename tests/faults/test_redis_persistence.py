"""A redis that can lose queued tasks is named at start, in the banner and the log.

On private redis-servers: one as many install it for a cache (no RDB save rules, no
append-only file), one with the append-only file, and the latter with an evicting
``maxmemory-policy``.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import redis

from djworker.broker import Broker
from djworker.broker_durability import redis_warnings
from tests.faults.servers import PrivateRedis
from tests.integration.harness import WorkerProcess, unique_queue

pytestmark = [pytest.mark.faults, pytest.mark.integration]


def warnings_for(server: PrivateRedis) -> list[str]:
    connection = Broker(url=server.url).connection()
    try:
        return redis_warnings(connection)
    finally:
        connection.release()


def test_a_redis_without_persistence_is_named(private_redis: PrivateRedis) -> None:
    [warning] = warnings_for(private_redis)
    assert "redis has no persistence" in warning
    assert "appendonly yes" in warning


def test_a_redis_with_the_append_only_file_and_noeviction_draws_no_warning(
    persistent_redis: PrivateRedis,
) -> None:
    assert warnings_for(persistent_redis) == []


def test_an_evicting_memory_policy_is_named(persistent_redis: PrivateRedis) -> None:
    redis.Redis.from_url(persistent_redis.url).config_set("maxmemory-policy", "allkeys-lru")
    [warning] = warnings_for(persistent_redis)
    assert "maxmemory-policy=allkeys-lru" in warning
    assert "noeviction" in warning


@pytest.mark.django_db(transaction=True)
def test_the_worker_banner_warns_of_a_redis_without_persistence(
    private_redis: PrivateRedis, worker_factory: Callable[..., WorkerProcess]
) -> None:
    worker = worker_factory("-Q", unique_queue(), broker_url=private_redis.url)
    banner = worker.output
    assert "warning:     redis has no persistence" in banner
    assert "WARNING" in banner and "redis has no persistence" in banner.split("ready")[0]
