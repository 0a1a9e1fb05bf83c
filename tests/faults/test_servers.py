"""The fault suite's private servers restart and crash as real servers do."""

from __future__ import annotations

import psycopg
import pytest
import redis

from tests.faults.conftest import PrivateDatabase
from tests.faults.servers import PrivateRedis

pytestmark = [pytest.mark.faults, pytest.mark.integration]


def test_a_redis_without_persistence_is_empty_after_a_restart(
    private_redis: PrivateRedis,
) -> None:
    redis.Redis.from_url(private_redis.url).rpush("q", "m")
    private_redis.restart()
    assert redis.Redis.from_url(private_redis.url).llen("q") == 0


def test_a_redis_with_an_append_only_file_keeps_every_write_through_a_crash(
    persistent_redis: PrivateRedis,
) -> None:
    client = redis.Redis.from_url(persistent_redis.url)
    client.rpush("q", *range(100))
    port = persistent_redis.port
    persistent_redis.restart(crash=True)
    assert persistent_redis.port == port
    assert redis.Redis.from_url(persistent_redis.url).llen("q") == 100


def test_the_private_postgres_keeps_committed_rows_through_a_crash_of_every_process(
    private_postgres: PrivateDatabase,
) -> None:
    with psycopg.connect(private_postgres.url, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (n int)")
        conn.execute("INSERT INTO t VALUES (1)")
    private_postgres.server.restart(crash=True)
    with psycopg.connect(private_postgres.url) as conn:
        assert conn.execute("SELECT count(*) FROM t").fetchone() == (1,)
        # the djworker tables came with the template
        assert conn.execute("SELECT count(*) FROM djworker_taskresult").fetchone() == (0,)
