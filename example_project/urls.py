from django.contrib import admin
from django.urls import include, path

from example_project.demo import views

urlpatterns = [
    path("admin/", admin.site.urls),
    # djworker's Prometheus metrics at /djworker/metrics (pip install "djworker[metrics]")
    path("djworker/", include("djworker.urls")),
    path("demo/enqueue/", views.enqueue, name="demo-enqueue"),
]
