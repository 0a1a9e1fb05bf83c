"""The task modules the comparison runner (``benchmarks/compare``) runs on each implementation.

``tasks.py`` holds djworker's tasks (``@djworker.task`` and ``django.tasks`` through
``WorkerBackend``) and the django-tasks-db ones; ``celery_app.py`` and ``huey_app.py`` hold the
same two tasks for Celery and huey. Every implementation runs the same pair: a no-op whose
result is stored, and a latency probe that writes how long it waited to the sink.
"""
