"""Worker name templates: Celery's placeholders, and one-line errors for others."""

from __future__ import annotations

import pytest

from djworker import conf, nodename, option_values
from djworker.exceptions import ConfigurationError


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("djworker@%h", "djworker@web-1.example.com"),
        ("%n-worker", "web-1-worker"),
        ("w.%i@%d", "w.4242@example.com"),
        ("100%%@%n", "100%@web-1"),
        ("plain", "plain"),
    ],
)
def test_a_name_template_expands_celerys_placeholders(template: str, expected: str) -> None:
    assert nodename.expand(template, host="web-1.example.com", pid=4242) == expected


def test_an_unknown_placeholder_is_refused_in_one_line_naming_the_allowed_ones() -> None:
    with pytest.raises(ConfigurationError) as info:
        option_values.parse_hostname("w@%x", name="--hostname")
    assert str(info.value) == (
        "--hostname: worker names take the placeholders %h, %n, %d, %i or %%; got '%x' in 'w@%x'"
    )


def test_the_default_name_has_no_pid_so_a_restart_reuses_its_row() -> None:
    resolved = conf.load_config(environ={})
    assert resolved.hostname == nodename.expand("djworker@%h")
