"""The control plane, in process: control commands and profile revisions reach the consumer and
the pool as the admin promises, with prefetch following the pool and pinned values kept.

The control plane's own tick is called by the test; what it hands to the consumer's thread runs
at the consumer's next loop iteration, as in a running worker.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from djworker.admin.worker_page import BUTTONS
from djworker.admin.workers import WorkerAdmin
from djworker.control import ControlPlane
from djworker.control_commands import CONTROL_ACTIONS
from djworker.models import CommandAction, CommandStatus, ControlCommand, WorkerProfile
from tests.inprocess.conftest import Rig
from tests.inprocess.test_consumer import add

MakeRig = Callable[..., Rig]


def plane_for(rig: Rig) -> ControlPlane:
    plane = ControlPlane(rig.worker)
    plane.start()
    rig.worker.plane = plane
    return plane


def send(plane: ControlPlane, action: str, n: int = 1, **fields: Any) -> ControlCommand:
    """Send a control command and let one control tick pick it up."""
    sent = ControlCommand.objects.create(
        worker_id=plane.heartbeat.row_id, action=action, argument=n, **fields
    )
    plane.poll_commands()
    return sent


def command(rig: Rig, plane: ControlPlane, action: str, n: int = 1) -> ControlCommand:
    """Send a control command and run it to its end, as two control ticks around the consumer."""
    sent = send(plane, action, n)
    rig.loop(1)
    plane.poll_commands()
    sent.refresh_from_db()
    return sent


def prefetch_count(rig: Rig) -> int:
    assert rig.consumer.connection is not None
    return int(rig.consumer.connection.default_channel.qos.prefetch_count)


def test_prefetch_follows_the_pool_as_a_command_grows_and_shrinks_it(make_rig: MakeRig) -> None:
    rig = make_rig(control_interval_s=0.01)
    plane = plane_for(rig)
    for n in range(5):
        add.apply_async((n, n), queue=rig.queue)
    rig.loop()
    assert len(rig.held.held) == 1
    assert prefetch_count(rig) == 1

    grown = command(rig, plane, CommandAction.GROW, 2)
    assert (grown.status, grown.message) == (CommandStatus.DONE, "grew 1→3")
    assert prefetch_count(rig) == 3
    rig.loop()
    assert len(rig.held.held) == 3

    shrunk = command(rig, plane, CommandAction.SHRINK, 2)
    assert (shrunk.status, shrunk.message) == (CommandStatus.DONE, "shrank 3→1")
    assert prefetch_count(rig) == 1
    for _ in range(3):
        rig.held.run_next()
    rig.loop()
    assert len(rig.held.held) == 1  # one at a time again


def test_a_grow_command_out_of_bounds_fails_naming_the_bound_and_the_value(
    make_rig: MakeRig,
) -> None:
    rig = make_rig(control_interval_s=0.01)
    plane = plane_for(rig)

    refused = command(rig, plane, CommandAction.GROW, 0)

    assert refused.status == CommandStatus.FAILED
    assert refused.message.startswith("grow needs N from 1 to ")
    assert refused.message.endswith("; got 0")
    assert rig.pool.size == 1


def test_a_profile_revision_applies_its_values_except_those_pinned_on_the_command_line(
    make_rig: MakeRig,
) -> None:
    profile = WorkerProfile.objects.create(name="inprocess", concurrency=1, prefetch_multiplier=1)
    # The command line pins prefetch_multiplier (make_rig passes 1) and leaves concurrency open.
    rig = make_rig(profile="inprocess", concurrency=None, control_interval_s=0.01)
    plane = plane_for(rig)
    assert rig.worker.settings.sources["concurrency"] == "admin"

    profile.concurrency = 3
    profile.prefetch_multiplier = 4
    profile.save()
    plane.reconcile()
    rig.loop(1)

    assert plane.applied_revision == profile.revision
    assert plane.profile_error == ""
    assert rig.pool.size == 3
    config = rig.worker.settings
    assert (config.prefetch_multiplier, config.sources["prefetch_multiplier"]) == (1, "cli")
    assert prefetch_count(rig) == 3  # 3 slots x the pinned 1, not x 4
    for n in range(5):
        add.apply_async((n, n), queue=rig.queue)
    rig.loop()
    assert len(rig.held.held) == 3


def test_a_profile_revision_that_cannot_apply_is_refused_and_says_why(make_rig: MakeRig) -> None:
    profile = WorkerProfile.objects.create(name="inprocess")
    rig = make_rig(pool="solo", profile="inprocess", concurrency=None, control_interval_s=0.01)
    plane = plane_for(rig)

    profile.autoscale_min, profile.autoscale_max = 1, 3
    profile.save()
    plane.reconcile()
    rig.loop(1)

    assert plane.profile_error == (
        f"revision {profile.revision} not applied: autoscale of profile 'inprocess' is not "
        "available with the solo pool: it cannot change its size while running; use one of "
        "threads, prefork, gevent or eventlet"
    )
    assert plane.applied_revision == profile.revision - 1
    assert rig.pool.size == 1


# -- the command table ----------------------------------------------------------------------------


def test_every_command_action_has_one_entry_and_the_admin_offers_the_others_by_name() -> None:
    assert list(CONTROL_ACTIONS) == list(CommandAction.values)
    offered = [(action.__name__, action.short_description) for action in WorkerAdmin.actions]
    assert offered == [
        ("pause", "Pause consumption"),
        ("resume", "Resume consumption"),
        ("grow", "Grow the pool by N"),
        ("shrink", "Shrink the pool by N"),
        ("restart_pool", "Restart the pool"),
        ("shutdown", "Warm shutdown"),
    ]
    assert [button[0] for button in BUTTONS] == [name for name, _ in offered]


def test_pause_stops_taking_messages_at_once_and_resume_takes_them_again(
    make_rig: MakeRig,
) -> None:
    rig = make_rig(control_interval_s=0.01)
    plane = plane_for(rig)

    paused = command(rig, plane, CommandAction.PAUSE)
    assert (paused.status, paused.message) == (
        CommandStatus.DONE,
        "paused: no new task will start; running tasks finish",
    )
    assert rig.consumer.hold and not rig.consumer.consuming
    add.apply_async((1, 1), queue=rig.queue)
    rig.loop()
    assert rig.held.held == [] and rig.waiting() == 1

    resumed = command(rig, plane, CommandAction.RESUME)
    assert (resumed.status, resumed.message) == (CommandStatus.DONE, "resumed")
    rig.loop()
    assert len(rig.held.held) == 1


def test_a_shutdown_command_asks_the_worker_for_a_warm_shutdown(make_rig: MakeRig) -> None:
    rig = make_rig(control_interval_s=0.01)
    plane = plane_for(rig)

    asked = command(rig, plane, CommandAction.SHUTDOWN)

    assert (asked.status, asked.message) == (
        CommandStatus.DONE,
        "warm shutdown started: running tasks finish, then the worker exits",
    )
    assert rig.worker.stop_requested and not rig.worker.cold_requested


def test_a_pool_that_cannot_resize_refuses_grow_naming_the_pools_that_can(
    make_rig: MakeRig,
) -> None:
    rig = make_rig(pool="solo", control_interval_s=0.01)
    plane = plane_for(rig)

    refused = command(rig, plane, CommandAction.GROW, 1)

    assert refused.status == CommandStatus.FAILED
    assert refused.message.startswith("the solo pool cannot change its size; use ")
    assert "threads" in refused.message
    assert rig.pool.size == 1


def test_a_pool_that_cannot_terminate_refuses_terminate_naming_the_pools_that_can(
    make_rig: MakeRig,
) -> None:
    rig = make_rig(control_interval_s=0.01)
    plane = plane_for(rig)

    refused = send(plane, CommandAction.TERMINATE, task_id="some-task")

    refused.refresh_from_db()
    assert refused.status == CommandStatus.FAILED
    assert refused.message.startswith(
        f"the {rig.pool.describe()} pool cannot terminate a running task; "
    )
    assert "prefork" in refused.message


def test_a_resize_that_changes_nothing_fails_saying_the_size_stays(make_rig: MakeRig) -> None:
    rig = make_rig(control_interval_s=0.01)
    plane = plane_for(rig)

    refused = command(rig, plane, CommandAction.SHRINK, 1)

    assert (refused.status, refused.message) == (CommandStatus.FAILED, "size stays 1")


def test_an_unknown_action_fails_listing_the_allowed_ones(make_rig: MakeRig) -> None:
    rig = make_rig(control_interval_s=0.01)
    plane = plane_for(rig)

    refused = send(plane, "explode")

    refused.refresh_from_db()
    assert (refused.status, refused.message) == (
        CommandStatus.FAILED,
        "unknown control action 'explode'; allowed: pause, resume, grow, shrink, restart_pool, "
        "shutdown, terminate",
    )


def test_a_profile_renaming_its_pool_to_an_alias_of_the_same_pool_restarts_nothing(
    make_rig: MakeRig, monkeypatch: Any
) -> None:
    """prefork and processes are one pool: the resolved classes decide, not the names.

    The prefork pool is not started here (no fork server in the test process); what is checked
    is the worker's decision, so its restarts are recorded instead of run. Moving on to another
    pool kind does replace the pool, which shows the recording would see a restart.
    """
    from djworker.concurrency.prefork import PreforkPool
    from djworker.worker import Worker

    monkeypatch.setattr(PreforkPool, "start", lambda self: None)
    monkeypatch.setattr(PreforkPool, "stop", lambda self, **kwargs: [])
    restarts: list[str] = []
    monkeypatch.setattr(Worker, "restart_process", lambda self: restarts.append("process"))
    monkeypatch.setattr(Worker, "replace_pool", lambda self: restarts.append("pool"))
    profile = WorkerProfile.objects.create(name="inprocess", pool="prefork")
    rig = make_rig(pool=None, profile="inprocess", control_interval_s=0.01)
    plane = plane_for(rig)
    pool = rig.pool
    assert isinstance(pool, PreforkPool)

    profile.pool = "processes"
    profile.full_clean()
    profile.save()
    plane.reconcile()
    rig.loop(1)

    assert plane.profile_error == ""
    assert plane.applied_revision == profile.revision
    assert rig.worker.settings.pool == "processes"
    assert restarts == []
    assert rig.pool is pool

    profile.pool = "threads"
    profile.save()
    plane.reconcile()
    rig.loop(1)

    assert plane.profile_error == ""
    assert restarts == ["pool"]
