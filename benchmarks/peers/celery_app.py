"""Celery's side of the comparison: a Django project with django-celery-results (``django-db``).

Configured from ``benchmarks.peers.settings`` (``CELERY_*``), as a Django project would be;
its worker stores every result in PostgreSQL through Django's ORM.
"""

from __future__ import annotations

import os

from celery import Celery

from benchmarks.peers.sink import record_wait

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchmarks.peers.settings")

app = Celery("djworker_bench")
app.config_from_object("django.conf:settings", namespace="CELERY")


@app.task
def noop() -> None:
    return None


@app.task
def probe(key: str, sent_at: float) -> None:
    record_wait(key, sent_at)
