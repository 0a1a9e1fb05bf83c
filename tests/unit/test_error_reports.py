from __future__ import annotations

import sys

import pytest
from django.test import RequestFactory, override_settings
from django.views.debug import ExceptionReporter, get_default_exception_reporter_filter

from djworker.checks import check_error_pages_hide_the_broker_password

FAILOVER = "amqp://guest:first-secret@a:5672//;amqp://guest:second-secret@b:5672//"
DJANGO_FILTER = "django.views.debug.SafeExceptionReporterFilter"
DJWORKER_FILTER = "djworker.error_reports.ExceptionReporterFilter"


@pytest.fixture(autouse=True)
def _fresh_default_filter() -> object:
    """Django caches the default filter; each test sets its own."""
    get_default_exception_reporter_filter.cache_clear()
    yield
    get_default_exception_reporter_filter.cache_clear()


def debug_page() -> str:
    broker_url = FAILOVER  # a local variable of the failing frame: shown on the page too
    try:
        raise RuntimeError(f"failed near {len(broker_url)}")
    except RuntimeError:
        reporter = ExceptionReporter(RequestFactory().get("/"), *sys.exc_info())
        return reporter.get_traceback_html()


@pytest.mark.parametrize(
    ("filter_path", "hidden"), [(DJWORKER_FILTER, True), (DJANGO_FILTER, False)]
)
def test_the_debug_page_hides_every_broker_password_with_djworkers_filter(
    filter_path: str, hidden: bool
) -> None:
    with override_settings(
        DEBUG=True, DJWORKER={"BROKER_URL": FAILOVER}, DEFAULT_EXCEPTION_REPORTER_FILTER=filter_path
    ):
        page = debug_page()
    assert ("first-secret" not in page and "second-secret" not in page) is hidden
    if hidden:
        assert "amqp://guest:***@a:5672//;amqp://guest:***@b:5672//" in page


@pytest.mark.parametrize(
    ("debug", "filter_path", "url", "warned"),
    [
        (True, DJANGO_FILTER, FAILOVER, True),
        (True, DJWORKER_FILTER, FAILOVER, False),
        (False, DJANGO_FILTER, FAILOVER, False),
        (True, DJANGO_FILTER, "redis://127.0.0.1:6379/0", False),
    ],
)
def test_a_check_warns_when_the_debug_page_would_show_the_broker_password(
    debug: bool, filter_path: str, url: str, warned: bool
) -> None:
    with override_settings(
        DEBUG=debug, DJWORKER={"BROKER_URL": url}, DEFAULT_EXCEPTION_REPORTER_FILTER=filter_path
    ):
        messages = check_error_pages_hide_the_broker_password()
    assert [m.id for m in messages] == (["djworker.W001"] if warned else [])
