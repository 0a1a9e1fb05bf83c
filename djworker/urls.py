"""djworker's URLs outside the admin: ``path("djworker/", include("djworker.urls"))``.

* ``metrics``: the cluster's Prometheus metrics (``djworker.metrics``; needs the ``metrics``
  extra, a staff session or ``settings.DJWORKER["METRICS_TOKEN"]``).
"""

from __future__ import annotations

from django.urls import path

from djworker.metrics import metrics_view

app_name = "djworker"
urlpatterns = [path("metrics", metrics_view, name="metrics")]
