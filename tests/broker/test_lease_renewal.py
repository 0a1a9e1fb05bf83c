"""``django://`` lease renewal warns of lost leases only when a lease really was lost.

A renewal round snapshots the held leases, then updates their rows. The consumer thread may
ack a message and delete its row in between: that row is not found, and is no loss.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.utils import timezone

from djworker.models.broker import QueueMessage
from djworker.transport.leases import LeaseKeeper
from djworker.transport.operations import operations_for

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def keeper() -> Iterator[LeaseKeeper]:
    made = LeaseKeeper(ops=operations_for("default"), visibility_timeout_s=3600)
    yield made
    made.stop()


def leased(keeper: LeaseKeeper, lease: str) -> QueueMessage:
    row = QueueMessage.objects.create(
        queue="renewal",
        payload="{}",
        lease=lease,
        visible_at=timezone.now() + timedelta(seconds=60),
        deliveries=1,
    )
    keeper.hold(lease, row.pk)
    return row


def test_a_message_acked_during_a_renewal_round_is_not_reported_lost(
    keeper: LeaseKeeper, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    leased(keeper, "kept")
    leased(keeper, "acked")
    real_held = LeaseKeeper.held

    def snapshot_then_ack(self: LeaseKeeper) -> dict[str, int]:
        snapshot = real_held(self)
        # The consumer thread acks one and the batch delete goes out before the UPDATE.
        self.settle("acked")
        self.flush()
        return snapshot

    monkeypatch.setattr(LeaseKeeper, "held", snapshot_then_ack)
    with caplog.at_level(logging.WARNING, logger="djworker.transport.leases"):
        assert keeper.renew() == 1
    assert not [r for r in caplog.records if "lease renewal lost" in r.getMessage()]


def test_a_lease_another_worker_took_is_reported_lost(
    keeper: LeaseKeeper, caplog: pytest.LogCaptureFixture
) -> None:
    leased(keeper, "kept")
    taken = leased(keeper, "taken")
    QueueMessage.objects.filter(pk=taken.pk).update(lease="another-worker")
    with caplog.at_level(logging.WARNING, logger="djworker.transport.leases"):
        assert keeper.renew() == 1
    [record] = [r for r in caplog.records if "lease renewal lost" in r.getMessage()]
    assert "lost=1 held=2" in record.getMessage()
    assert str(taken.pk) in record.getMessage()
