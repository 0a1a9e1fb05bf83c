"""djworker's admin pages, one module per concern."""

from djworker.admin import (
    results,  # noqa: F401
    workers,  # noqa: F401
)
