"""djworker's admin pages, one module per concern."""

from djworker.admin import (
    dashboard,  # noqa: F401
    former_urls,  # noqa: F401
    queues,  # noqa: F401
    results,  # noqa: F401
    workers,  # noqa: F401
)
