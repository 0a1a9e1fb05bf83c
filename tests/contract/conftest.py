from __future__ import annotations

from tests.integration.conftest import worker_factory  # noqa: F401 - real worker subprocesses
