"""Fixtures of the hostile suite: the fault suite's side channel, a broker."""

from __future__ import annotations

import pytest

from tests.faults.conftest import execution_log

__all__ = ["broker_name", "execution_log"]


@pytest.fixture(params=["django", "redis", "amqp"])
def broker_name(request: pytest.FixtureRequest) -> str:
    """Each hostile test runs on every broker (``django://`` on the test database's engine)."""
    if request.param != "django":
        request.getfixturevalue(f"{request.param}_url")  # skips, or fails in CI, if it is down
    return str(request.param)
