"""``MaintenanceLease``: lets one worker of the cluster at a time do a periodic chore."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db import models
from django.db.models import Q
from django.utils import timezone


class MaintenanceLease(models.Model):
    """One row per chore (such as ``result-expiry``): who holds it, until when, and how the
    last run went. Taking it is a conditional ``UPDATE``, so it works on every database."""

    name = models.CharField(primary_key=True, max_length=64)
    holder = models.CharField(max_length=255, blank=True)
    held_until = models.DateTimeField(default=timezone.now)
    last_started_at = models.DateTimeField(null=True, blank=True)
    last_finished_at = models.DateTimeField(null=True, blank=True)
    last_outcome = models.TextField(blank=True)

    class Meta:
        verbose_name = "maintenance lease"

    def __str__(self) -> str:
        return f"{self.name} held by {self.holder or 'nobody'} until {self.held_until}"


def take_lease(name: str, holder: str, *, hold_s: float, now: datetime | None = None) -> bool:
    """Take the lease ``name`` for ``hold_s`` seconds unless another holder has it; True if
    taken (or renewed: a holder may take its own lease again)."""
    now = now or timezone.now()
    until = now + timedelta(seconds=hold_s)
    free = Q(held_until__lte=now) | Q(holder=holder)
    fields = {"holder": holder, "held_until": until, "last_started_at": now}
    if MaintenanceLease.objects.filter(free, name=name).update(**fields):
        return True
    MaintenanceLease.objects.bulk_create(
        [MaintenanceLease(name=name, **fields)], ignore_conflicts=True
    )
    # Of holders racing to create the row, the one whose insert won finds itself in it.
    return MaintenanceLease.objects.filter(name=name, holder=holder, held_until=until).exists()
