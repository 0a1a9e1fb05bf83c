from __future__ import annotations

from collections.abc import Callable

import pytest

pytestmark = pytest.mark.integration


@pytest.fixture(params=["django", "redis", "amqp"])
def every_broker(request: pytest.FixtureRequest, use_broker: Callable[..., object]) -> str:
    """The test runs on each broker; the test process publishes through it."""
    if request.param == "django":
        url = "django://"
    else:
        url = request.getfixturevalue(f"{request.param}_url")
    use_broker(url)
    return url
