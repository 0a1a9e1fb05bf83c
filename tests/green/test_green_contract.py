"""The BasePool contract for the green pool this process was patched for (gevent or eventlet)."""

from __future__ import annotations

import pytest

from tests.contract.pool_contract import PoolContract
from tests.green.conftest import GREEN

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def pool_name() -> str:
    return GREEN


class TestTheGreenPool(PoolContract):
    """gevent or eventlet, whichever this process was patched for."""

    size = 3
