"""Green-pool tests run only in a patched process started by ``python -m tests.green.run``.

In the main test run they are skipped with that reason, so patching never leaks into the
rest of the suite and the rest of the suite never runs half-patched.
"""

from __future__ import annotations

import os

import pytest

GREEN = os.environ.get("DJWORKER_TEST_GREEN", "")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if GREEN:
        return
    skip = pytest.mark.skip(
        reason="green-pool tests run in their own patched process: scripts/test-green"
    )
    here = os.path.dirname(__file__)
    for item in items:
        if str(item.path).startswith(here):
            item.add_marker(skip)
