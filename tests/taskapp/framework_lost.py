"""django.tasks tasks that a worker's deploy may have lost; no ``tasks.py`` imports this module.

The test process defines every task here. A worker started with ``DJWORKER_TEST_LOST_TASKS``
stands for a later deploy: ``function`` drops ``renamed_later`` (the module still imports),
``module`` makes the module itself fail to import.
"""

from __future__ import annotations

import os

from djworker.tasks_framework import task

LOST = os.environ.get("DJWORKER_TEST_LOST_TASKS", "")

if LOST == "module":
    raise ImportError("tests.taskapp.framework_lost cannot be imported in this deploy")


@task
def still_here() -> str:
    return "here"


if LOST != "function":

    @task
    def renamed_later() -> str:
        return "ran"
