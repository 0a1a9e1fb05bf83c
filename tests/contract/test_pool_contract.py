"""The BasePool contract for the pools that need no monkey-patching.

The green pools run the same contract in their own patched process: see
``tests/green/test_green_contract.py`` and ``scripts/test-green``.
"""

from __future__ import annotations

import pytest

from tests.contract.pool_contract import PoolContract

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(params=["solo", "threads", "prefork", "custom"])
def pool_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


class TestEveryPool(PoolContract):
    """solo, threads, prefork and the example custom pool against one contract."""
