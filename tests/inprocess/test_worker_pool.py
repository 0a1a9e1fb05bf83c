"""The worker owns its pool, in process: one drain serves the warm shutdown, the pool restart and
the process restart, and a cold shutdown asked for during that drain stops the restart.

The pool holds each job until the test starts or ends it (``HeldPool``): a held job has not
started (a drain hands it back to the broker), a begun one is running (a drain waits for it).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.db import connections

from djworker import green
from djworker.conf import WorkerSettings
from djworker.models import CommandAction, CommandStatus, WorkerProfile
from djworker.worker import ColdShutdown, Worker
from tests.inprocess.conftest import Rig
from tests.inprocess.recording import answers
from tests.inprocess.stub_pool import HeldProcessPool
from tests.inprocess.test_consumer import add
from tests.inprocess.test_control import command, plane_for, send

MakeRig = Callable[..., Rig]
HELD_PROCESS_POOL = f"{HeldProcessPool.__module__}:{HeldProcessPool.__qualname__}"


@pytest.fixture
def drains(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """What each ``Worker.drain`` call returned, in order."""
    returned: list[bool] = []
    drain = Worker.drain

    def counted(worker: Worker) -> bool:
        returned.append(drain(worker))
        return returned[-1]

    monkeypatch.setattr(Worker, "drain", counted)
    return returned


@pytest.fixture
def execs(monkeypatch: pytest.MonkeyPatch) -> list[str | None]:
    """The green pool each start-again of the process patched for; the test process stays."""
    started: list[str | None] = []
    monkeypatch.setattr(green, "exec_worker", lambda argv, *, patch_for: started.append(patch_for))
    # Stopping for good closes every connection; the test's own must stay in its transaction.
    monkeypatch.setattr(connections, "close_all", lambda: None)
    return started


def unstarted_and_running(rig: Rig) -> tuple[str, str]:
    """Two tasks received: the first running, the second not started. Their ids."""
    running = add.apply_async((1, 1), queue=rig.queue)
    unstarted = add.apply_async((2, 2), queue=rig.queue)
    rig.loop()
    rig.held.begin_next()
    return running.id, unstarted.id


def test_a_warm_shutdown_drains_the_pool_hands_back_unstarted_tasks_and_exits_0(
    make_rig: MakeRig, drains: list[bool], execs: list[str | None]
) -> None:
    rig = make_rig(concurrency=2, control_interval_s=0.01)
    plane_for(rig)
    unstarted = add.apply_async((2, 2), queue=rig.queue)
    rig.loop()

    assert rig.worker._shutdown() == 0

    assert drains == [True]
    assert answers(unstarted.id)[-1][0] == "requeue"


def test_restarting_the_pool_drains_it_and_the_new_pool_takes_the_handed_back_task(
    make_rig: MakeRig, drains: list[bool]
) -> None:
    rig = make_rig(control_interval_s=0.01)
    plane = plane_for(rig)
    unstarted = add.apply_async((2, 2), queue=rig.queue)
    rig.loop()
    old_pool = rig.pool

    restarted = command(rig, plane, CommandAction.RESTART_POOL)

    assert (restarted.status, restarted.message) == (
        CommandStatus.DONE,
        f"pool restarted: {rig.pool.describe()}, 1 slot(s)",
    )
    assert drains == [True]
    assert rig.pool is not old_pool and rig.consumer.pool is rig.pool
    assert answers(unstarted.id)[-1][0] == "requeue"
    rig.loop()
    assert [job.envelope["id"] for job in rig.held.held] == [unstarted.id]


def test_restarting_a_pool_of_processes_drains_it_then_starts_the_process_again(
    make_rig: MakeRig, drains: list[bool], execs: list[str | None]
) -> None:
    rig = make_rig(pool=HELD_PROCESS_POOL, control_interval_s=0.01)
    plane = plane_for(rig)
    unstarted = add.apply_async((2, 2), queue=rig.queue)
    rig.loop()

    asked = command(rig, plane, CommandAction.RESTART_POOL)

    assert asked.status == CommandStatus.DONE
    assert asked.message.startswith("starting the worker process again for a fresh pool")
    assert drains == [True]
    assert execs == [None]  # not a green pool: the new process patches nothing
    assert answers(unstarted.id)[-1][0] == "requeue"
    assert rig.consumer.connection is None


def test_a_cold_shutdown_during_the_drain_of_a_pool_restart_stops_instead_of_restarting(
    make_rig: MakeRig, drains: list[bool]
) -> None:
    rig = make_rig(concurrency=2, control_interval_s=0.01)
    plane = plane_for(rig)
    running, unstarted = unstarted_and_running(rig)
    old_pool = rig.pool
    send(plane, CommandAction.RESTART_POOL)
    rig.worker.cold_requested = True  # what a SIGQUIT sets while the drain waits

    with pytest.raises(ColdShutdown):
        rig.loop(1)

    # Previously the restart went on: a new pool started and the worker consumed again.
    assert drains == [False]
    assert rig.pool is old_pool
    assert [job.envelope["id"] for job in rig.held.running] == [running]
    assert answers(unstarted)[-1][0] == "requeue"


def test_a_cold_shutdown_during_the_drain_of_a_process_restart_stops_instead_of_restarting(
    make_rig: MakeRig, drains: list[bool], execs: list[str | None]
) -> None:
    rig = make_rig(pool=HELD_PROCESS_POOL, concurrency=2, control_interval_s=0.01)
    plane = plane_for(rig)
    unstarted_and_running(rig)
    send(plane, CommandAction.RESTART_POOL)
    rig.worker.cold_requested = True

    with pytest.raises(ColdShutdown):
        rig.loop(1)

    # Previously the process started again, and the cold shutdown was forgotten.
    assert drains == [False]
    assert execs == []


def test_a_profile_revision_is_applied_by_the_worker_on_the_consumer_thread(
    make_rig: MakeRig, monkeypatch: pytest.MonkeyPatch
) -> None:
    profile = WorkerProfile.objects.create(name="inprocess", concurrency=1)
    rig = make_rig(profile="inprocess", concurrency=None, control_interval_s=0.01)
    plane = plane_for(rig)
    applied: list[WorkerSettings] = []
    apply_settings = rig.worker.apply_settings

    def recorded(new: WorkerSettings) -> list[str]:
        applied.append(new)
        return apply_settings(new)

    monkeypatch.setattr(rig.worker, "apply_settings", recorded)
    profile.concurrency = 2
    profile.save()
    plane.reconcile()
    assert applied == []  # the control thread only handed it over

    rig.loop(1)

    assert [new.concurrency for new in applied] == [2]
    assert rig.worker.settings is applied[0] and rig.consumer.settings is applied[0]
    assert rig.pool.size == 2
    assert plane.applied_revision == profile.revision
