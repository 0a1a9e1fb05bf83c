"""``conf.OPTIONS`` is the one place a setting is declared: every layer follows from its entry.

A setting is added by its entry (and, for one a worker profile sets, the profile's field and
its migration); these tests fail if a layer still needs a list of its own.
"""

from __future__ import annotations

import pytest
from django.core.management import CommandError, load_command_class

from djworker import conf
from djworker.admin.workers import WorkerProfileAdmin
from djworker.models import WorkerProfile

#: profile fields that are not settings of OPTIONS: its name, and ``paused`` (a control)
NOT_OPTIONS = {"id", "name", "paused", "revision", "updated_at"}


def test_every_option_is_a_runworker_argument_parsed_by_the_entrys_parser() -> None:
    parser = load_command_class("djworker", "runworker").create_parser("manage.py", "runworker")
    by_dest = {action.dest: action for action in parser._actions}
    for option in conf.OPTIONS:
        action = by_dest[option.field]
        assert option.cli_flag in action.option_strings
        assert action.help == option.help
    with pytest.raises(CommandError, match="--prefetch-multiplier expects a whole number >= 0"):
        parser.parse_args(["--prefetch-multiplier", "-1"])


def test_every_profile_field_is_named_by_exactly_one_option_and_every_named_field_exists() -> None:
    profile_fields = {f.name for f in WorkerProfile._meta.fields} - NOT_OPTIONS
    named = [name for option in conf.OPTIONS for name in option.profile_fields]
    assert sorted(named) == sorted(profile_fields)


def test_the_profile_form_shows_every_field_once_in_its_options_section() -> None:
    fieldsets = WorkerProfileAdmin.fieldsets or ()
    shown = {field: title for title, opts in fieldsets for field in opts["fields"]}
    for name, option in conf.OPTION_OF_PROFILE_FIELD.items():
        assert shown[name] == (option.profile_section or None)
    fields = [f for _, opts in fieldsets for f in opts["fields"]]
    assert len(fields) == len(set(fields))
    assert {"name", "custom_pool", "paused"} <= set(fields)


def test_a_profile_gives_each_field_to_the_setting_its_option_names() -> None:
    profile = WorkerProfile(
        pool=" prefork ",
        concurrency=3,
        autoscale_min=4,
        autoscale_max=2,
        autoscale_keepalive=9.0,
        queues="a, b",
        prefetch_multiplier=2,
        max_tasks_per_child=7,
        max_memory_per_child=1000,
        time_limit=20.0,
        soft_time_limit=10.0,
        max_deliveries=3,
        paused=True,
    )
    assert profile.as_settings() == {
        "pool": "prefork",
        "concurrency": 3,
        "autoscale": (2, 4),
        "autoscale_keepalive_s": 9.0,
        "queues": ("a", "b"),
        "prefetch_multiplier": 2,
        "max_tasks_per_child": 7,
        "max_memory_per_child_kib": 1000,
        "time_limit_s": 20.0,
        "soft_time_limit_s": 10.0,
        "max_deliveries": 3,
        "paused": True,
    }
