"""The control command table: what each ``ControlCommand`` action does, and how the admin offers it.

One entry per action. The worker's control plane looks a command row up here and runs its
entry on the control thread; an entry refuses what cannot be done (raising names the bad
value and what is allowed, and becomes the command's FAILED message) or hands the work to the
consumer's thread through ``RunningWorker.call_soon``. The admin builds its worker actions and
the worker page's buttons from the same entries, so adding a control means adding an entry
here (and the action to ``CommandAction``).

A handler returns the outcome message, or a future of it when the consumer thread does the work.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from djworker import bounds
from djworker.concurrency.registry import pools_with, spoken
from djworker.exceptions import CommandRefused
from djworker.models import CommandAction, ControlCommand
from djworker.running_worker import RunningWorker

Handler = Callable[[RunningWorker, ControlCommand], "str | Future[Any]"]


@dataclass(frozen=True)
class AdminOffer:
    """How the admin offers an action on workers: list action and worker-page button."""

    #: the worker list's action ("Pause consumption")
    description: str
    #: the worker page's button ("Pause")
    button: str
    #: what the button's confirmation asks ("Pause consumption of" the worker)
    confirm: str


@dataclass(frozen=True)
class ControlAction:
    action: CommandAction
    run: Handler
    #: how the admin offers it on workers; None for actions sent from elsewhere (terminate)
    offer: AdminOffer | None = None
    #: whether it takes N (the number of slots), checked against the pool size bound
    sized: bool = False


def pause(worker: RunningWorker, command: ControlCommand) -> str:
    consumer = worker.consumer
    # The flag alone stops new work at once, even while a solo task blocks the consumer.
    consumer.hold = True
    worker.call_soon(lambda: consumer.set_paused(True))
    return "paused: no new task will start; running tasks finish"


def resume(worker: RunningWorker, command: ControlCommand) -> Future[str]:
    def resume_now() -> str:
        worker.consumer.set_paused(False)
        return "resumed"

    return worker.call_soon(resume_now)


def grow(worker: RunningWorker, command: ControlCommand) -> Future[str]:
    return _resize_command(worker, command, sign=1)


def shrink(worker: RunningWorker, command: ControlCommand) -> Future[str]:
    return _resize_command(worker, command, sign=-1)


def _resize_command(worker: RunningWorker, command: ControlCommand, *, sign: int) -> Future[str]:
    n, largest = command.argument, worker.settings.max_concurrency
    if not 1 <= n <= largest:
        raise CommandRefused(
            f"{command.action} needs N from 1 to {largest} ({bounds.SETTING}); got {n}"
        )
    if not worker.pool.supports_autoscale:
        raise CommandRefused(
            f"the {worker.pool.describe()} pool cannot change its size; "
            f"use {spoken(pools_with('supports_autoscale'))}"
        )
    return worker.call_soon(lambda: resize_by(worker, sign * n))


def resize_by(worker: RunningWorker, delta: int) -> str:
    """Consumer thread: resize by ``delta`` within the autoscale and size bounds."""
    scale = worker.settings.autoscale
    before = worker.pool.size
    target = max(1, before + delta)
    note = ""
    if scale:
        clamped = min(max(target, scale[0]), scale[1])
        if clamped != target:
            note = f" (autoscale keeps it within {scale[0]}..{scale[1]})"
        target = clamped
    largest = worker.settings.max_concurrency
    if target > largest:
        note = f" (the maximum pool size is {largest}, {bounds.SETTING})"
        target = largest
    after = worker.resize(target - before)
    verb = "grew" if delta > 0 else "shrank"
    if after == before:
        raise CommandRefused(f"size stays {before}{note}")
    return f"{verb} {before}→{after}{note}"


def restart_pool(worker: RunningWorker, command: ControlCommand) -> str | Future[str]:
    if worker.pool.uses_processes:
        # A new fork server must be forked from a process that holds no database
        # connection: only a fresh worker process, before its threads start, is one.
        worker.call_soon(worker.restart_process)
        return (
            "starting the worker process again for a fresh pool: running tasks "
            "finish first, unstarted ones go back to the broker"
        )
    return worker.call_soon(worker.replace_pool)


def terminate(worker: RunningWorker, command: ControlCommand) -> Future[str]:
    if not worker.pool.supports_terminate:
        raise CommandRefused(
            f"the {worker.pool.describe()} pool cannot terminate a running task; "
            f"{spoken(pools_with('supports_terminate'), 'and')} can"
        )
    task_id = command.task_id

    def terminate_now() -> str:
        if not worker.pool.terminate_job(task_id):
            raise LookupError(f"task {task_id!r} is not running here (it may have just finished)")
        return f"terminated task {task_id}; its result is recorded FAILED (Terminated)"

    return worker.call_soon(terminate_now)


def shutdown(worker: RunningWorker, command: ControlCommand) -> str:
    worker.request_stop()
    return "warm shutdown started: running tasks finish, then the worker exits"


#: every control action, in the order the admin lists them
CONTROL_ACTIONS: dict[str, ControlAction] = {
    entry.action: entry
    for entry in (
        ControlAction(
            CommandAction.PAUSE,
            pause,
            AdminOffer("Pause consumption", "Pause", "Pause consumption of"),
        ),
        ControlAction(
            CommandAction.RESUME,
            resume,
            AdminOffer("Resume consumption", "Resume", "Resume consumption of"),
        ),
        ControlAction(
            CommandAction.GROW,
            grow,
            AdminOffer("Grow the pool by N", "Grow", "Grow the pool of"),
            sized=True,
        ),
        ControlAction(
            CommandAction.SHRINK,
            shrink,
            AdminOffer("Shrink the pool by N", "Shrink", "Shrink the pool of"),
            sized=True,
        ),
        ControlAction(
            CommandAction.RESTART_POOL,
            restart_pool,
            AdminOffer("Restart the pool", "Restart pool", "Restart the pool of"),
        ),
        ControlAction(
            CommandAction.SHUTDOWN,
            shutdown,
            AdminOffer("Warm shutdown", "Warm shutdown", "Shut down (warm)"),
        ),
        ControlAction(CommandAction.TERMINATE, terminate),
    )
}

#: the actions the admin offers on workers (list actions and worker-page buttons)
ADMIN_ACTIONS: tuple[ControlAction, ...] = tuple(
    entry for entry in CONTROL_ACTIONS.values() if entry.offer is not None
)


def control_action(action: str) -> ControlAction:
    """The table entry for ``action``; refuses an action the table does not know."""
    entry = CONTROL_ACTIONS.get(action)
    if entry is None:
        raise CommandRefused(
            f"unknown control action {action!r}; allowed: {', '.join(CONTROL_ACTIONS)}"
        )
    return entry
