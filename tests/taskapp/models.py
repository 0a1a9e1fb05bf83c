from django.db import models


class Note(models.Model):
    """A row tasks write, so tests can see that a task ran and what it saw."""

    text = models.CharField(max_length=200)
    created_at = models.DateTimeField(auto_now_add=True)
