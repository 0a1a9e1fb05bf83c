"""A control command the running worker refuses is a run-time refusal, not a configuration error.

The command's row is FAILED with the refusal's message (the in-process tests of the control
plane check each message); here, the kind of error, which callers catch by class.
"""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured

from djworker import control_commands
from djworker.exceptions import CommandRefused, ConfigurationError, OperationRefused


def solo_worker() -> Any:
    """What the refusals read of a running worker: its size bound and a pool that cannot resize,
    cannot terminate and stays at one slot."""
    pool = SimpleNamespace(
        size=1, supports_autoscale=False, supports_terminate=False, describe=lambda: "solo"
    )
    return SimpleNamespace(
        settings=SimpleNamespace(max_concurrency=4, autoscale=None),
        pool=pool,
        resize=lambda delta: 1,
    )


def command(action: str, argument: int = 1) -> Any:
    return SimpleNamespace(action=action, argument=argument, task_id="some-task")


REFUSALS: dict[str, Callable[[], object]] = {
    "grow out of bounds": lambda: control_commands.grow(solo_worker(), command("grow", 0)),
    "grow a pool that cannot resize": lambda: control_commands.grow(solo_worker(), command("grow")),
    "a resize that changes nothing": lambda: control_commands.resize_by(solo_worker(), -1),
    "terminate on a pool that cannot": lambda: control_commands.terminate(
        solo_worker(), command("terminate")
    ),
    "an unknown action": lambda: control_commands.control_action("explode"),
}


@pytest.mark.parametrize("refusal", REFUSALS.values(), ids=REFUSALS.keys())
def test_a_refused_control_command_raises_command_refused_not_a_configuration_error(
    refusal: Callable[[], object],
) -> None:
    with pytest.raises(CommandRefused) as refused:
        refusal()
    assert isinstance(refused.value, OperationRefused)
    assert not isinstance(refused.value, ConfigurationError | ImproperlyConfigured)
