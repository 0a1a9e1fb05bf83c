from django.contrib import admin
from django.urls import path

from example_project.demo import views

urlpatterns = [
    path("admin/", admin.site.urls),
    path("demo/enqueue/", views.enqueue, name="demo-enqueue"),
]
