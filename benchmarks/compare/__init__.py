"""The comparison runner: djworker side by side with Celery, huey and django-tasks-db.

``python -m benchmarks.compare`` (the ``bench`` extra installs the peers). See
docs/benchmarks.md for what it measures and how to read its table.
"""
