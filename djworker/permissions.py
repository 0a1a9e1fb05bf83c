"""The permissions of djworker's admin, one constant each, and what each one allows.

The model permissions Django creates (view, add, change, delete) cover reading and editing rows.
More permissions separate the powers that reach running workers or sensitive data:

* ``djworker.control_worker`` (on ``Worker``): send control commands (pause, resume, grow,
  shrink, restart the pool, warm shutdown, terminate a task), and change the fields of a profile
  that act like one: ``paused`` and ``pool``.
* ``djworker.choose_custom_pool`` (on ``WorkerProfile``): set a profile's pool to a custom class,
  which must also be listed in ``settings.DJWORKER["CUSTOM_POOLS"]``.
* ``djworker.view_task_arguments`` (on ``TaskResult``): see a task's arguments, result,
  exception message and traceback; ``view_taskresult`` alone shows the rest of the row.
* ``djworker.retry_task`` and ``djworker.revoke_task`` (on ``TaskResult``): send a finished
  task again, and stop a waiting one from ever running.
* ``djworker.purge_queue`` (on ``BrokerQueue``): delete the waiting messages of a queue;
  ``view_brokerqueue`` shows the queue page.

docs/security.md has the whole table.
"""

from __future__ import annotations

CONTROL_WORKER = "djworker.control_worker"
CHOOSE_CUSTOM_POOL = "djworker.choose_custom_pool"
VIEW_TASK_ARGUMENTS = "djworker.view_task_arguments"
RETRY_TASK = "djworker.retry_task"
REVOKE_TASK = "djworker.revoke_task"
PURGE_QUEUE = "djworker.purge_queue"

#: the profile fields that act like a control command: only ``CONTROL_WORKER`` may change them
CONTROL_FIELDS = ("pool", "paused")
