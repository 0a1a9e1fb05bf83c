"""Test settings for prefork workers: a recognisable application_name, optionally a pool.

``DJWORKER_TEST_APP_NAME`` names the worker's sessions in ``pg_stat_activity`` so a test can
count exactly the connections one worker holds; ``DJWORKER_TEST_DB_POOL=1`` turns on Django's
psycopg connection pool (which needs ``CONN_MAX_AGE=0``).
"""

from __future__ import annotations

import os

from tests.settings import *  # noqa: F403

_options = DATABASES["default"].setdefault("OPTIONS", {})  # noqa: F405
if os.environ.get("DJWORKER_TEST_APP_NAME"):
    _options["application_name"] = os.environ["DJWORKER_TEST_APP_NAME"]
if os.environ.get("DJWORKER_TEST_DB_POOL") == "1":
    DATABASES["default"]["CONN_MAX_AGE"] = 0  # noqa: F405
    _options["pool"] = {"min_size": 1, "max_size": 2}
