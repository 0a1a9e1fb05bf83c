"""How many messages a consumer reserves: it follows the pool size as autoscale resizes it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from djworker import conf
from djworker.consumer import Consumer


@dataclass
class SizedPool:
    size: int


def consumer(pool_size: int, **settings: Any) -> Consumer:
    config = conf.load_config(environ={}, djworker_settings={}, cli=settings)
    return Consumer(broker=None, settings=config, pool=SizedPool(pool_size))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("size", "settings", "target"),
    [
        pytest.param(4, {}, 16, id="fixed-pool-size-times-the-default-multiplier"),
        pytest.param(4, {"prefetch_multiplier": 0}, 0, id="zero-multiplier-means-no-limit"),
        pytest.param(1, {"autoscale": (1, 3)}, 4, id="autoscaled-pool-follows-its-current-size"),
        pytest.param(3, {"autoscale": (1, 3)}, 12, id="grown-pool-reserves-more"),
        pytest.param(
            1,
            {"autoscale": (1, 3), "prefetch_multiplier": 1},
            2,
            id="room-to-grow-reserves-one-more-than-the-slots",
        ),
        pytest.param(
            3,
            {"autoscale": (1, 3), "prefetch_multiplier": 1},
            3,
            id="at-the-maximum-only-the-slots",
        ),
        pytest.param(2, {"prefetch_multiplier": 1}, 2, id="fixed-pool-never-reserves-extra"),
    ],
)
def test_prefetch_target(size: int, settings: dict[str, Any], target: int) -> None:
    assert consumer(size, **settings).prefetch_target == target


def test_the_target_moves_with_the_pool() -> None:
    c = consumer(1, autoscale=(1, 3))
    c.pool.size = 3  # type: ignore[misc]
    assert c.prefetch_target == 12
