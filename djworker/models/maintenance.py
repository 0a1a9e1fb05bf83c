"""``MaintenanceLease``: lets one worker of the cluster at a time do a periodic chore."""

from __future__ import annotations

from django.db import models
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
