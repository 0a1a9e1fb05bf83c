"""The worker profile's former model name, kept so that its old admin URLs still work.

Until the model was renamed ``WorkerProfile`` (migration 0015) the admin showed worker profiles
under ``/admin/djworker/workerconfig/``. The admin names a model's pages after the model, so
this proxy, under the old name, gives those URLs a home: ``djworker.admin.former_urls`` answers
each of them with a permanent redirect to the same page under ``workerprofile``. It has no
permissions and the admin does not list it. (``djworker.models.WorkerConfig``, the old name in
imports, is ``WorkerProfile`` itself.)
"""

from __future__ import annotations

from djworker.models.workers import WorkerProfile


class WorkerConfig(WorkerProfile):
    """The old admin URLs' model: the same rows as ``WorkerProfile``."""

    class Meta:
        proxy = True
        default_permissions = ()
        verbose_name = "worker profile (former admin URL)"
        verbose_name_plural = "worker profiles (former admin URL)"
