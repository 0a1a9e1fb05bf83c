"""Test settings plus a PostgreSQL ``application_name``, so a worker's connections can be counted.

``DJWORKER_DB_APP_NAME`` names the connections in ``pg_stat_activity``; ``DJWORKER_DB_POOL_MAX``
configures Django's psycopg pool (the green worker's connection budget) with that ``max_size``.
"""

from __future__ import annotations

import os

from tests.settings import *  # noqa: F403

_options = DATABASES["default"].setdefault("OPTIONS", {})  # noqa: F405
if os.environ.get("DJWORKER_DB_APP_NAME"):
    _options["application_name"] = os.environ["DJWORKER_DB_APP_NAME"]
if os.environ.get("DJWORKER_DB_POOL_MAX"):
    _options["pool"] = {"min_size": 0, "max_size": int(os.environ["DJWORKER_DB_POOL_MAX"])}
