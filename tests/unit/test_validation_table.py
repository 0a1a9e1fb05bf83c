"""Every option, on every layer, refuses bad values in one line naming the value and the rule.

Table-driven over ``conf.OPTIONS`` (each option's settings key, environment variable and
command-line flag), the command-line-only options and every transport option: adding an option
without bad values here fails ``test_every_option_has_bad_values_in_this_table``.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.core.management import CommandError

from djworker import conf
from djworker.broker_conf import TRANSPORT_OPTIONS, parse_transport_options, redact_url
from djworker.exceptions import ConfigurationError
from djworker.management.commands.runworker import Command

#: field -> bad values (as text, as the environment and command line give them)
BAD: dict[str, list[str]] = {
    "pool": ["thread", " "],
    "concurrency": ["-1", "two", "inf", "nan", "1.5"],
    "autoscale": ["3", "0,2", "1,x", "1,2,3"],
    "autoscale_keepalive_s": ["0", "-1", "nan", "inf", "1e300", "soon"],
    "queues": ["a,,b", "a b", "q" * 201, "<script>"],
    "hostname": ["h" * 256, "a\nb", " "],
    "loglevel": ["LOUD"],
    "prefetch_multiplier": ["-1", "x", "inf"],
    "max_tasks_per_child": ["-3", "many", "inf"],
    "max_memory_per_child_kib": ["lots", "200XB", "-5"],
    "time_limit_s": ["0", "-2", "nan", "inf", "-inf", "1e12", "abc"],
    "soft_time_limit_s": ["0", "nan", "inf"],
    "max_deliveries": ["-1", "x", "1.5", "inf"],
    "broker_url": ["nonsense://x", "redis://a;amqp://b", "no-scheme", "redis://h:99999/0", " "],
}

#: command-line-only flags -> bad values
BAD_CLI_ONLY: dict[str, list[str]] = {
    "--profile": ["c" * 150, "<script>", "a b", "é"],
}

#: settings-only keys -> bad values (settings keep their Python types)
BAD_SETTINGS_ONLY: dict[str, list[Any]] = {
    "BROKER_TRANSPORT_OPTIONS": ["visibility_timeout=-1", [("visibility_timeout", 1)]],
    "MAX_CONCURRENCY": [0, -1, "10", 2**31, True, float("inf")],
    "CUSTOM_POOLS": ["pkg.mod:Pool", ["not a path"], [1]],
    "RESULT_EXPIRES": [0, -1, "7d", float("nan"), True, 10**12],
    "METRICS_TOKEN": ["short", "", 12345678901234567890, " a-token-with-spaces-around "],
    "RESULT_CLEANUP_INTERVAL": [0, None, "5m", float("inf")],
    "WORKER_LOST_AFTER": [0, 9, None, "1m", float("nan")],
}

#: transport option -> a bad value (in settings, values keep their Python type)
BAD_TRANSPORT: dict[str, Any] = {
    "visibility_timeout": -1,
    "polling_interval": "abc",
    "max_retries": -1,
    "interval_start": float("nan"),
    "interval_step": "1",
    "interval_max": float("inf"),
    "database": "nosuchalias",
    "priority_steps": [1, "x"],
    "sep": "",
    "queue_order_strategy": "random",
    "global_keyprefix": 5,
    "socket_timeout": 0,
    "socket_connect_timeout": True,
    "socket_keepalive": "yes",
    "socket_keepalive_options": [1],
    "max_connections": 0,
    "health_check_interval": -5,
    "retry_on_timeout": 1,
    "client_name": None,
    "unacked_restore_limit": 2**40,
    "unacked_restore_throttle": 0,
    "unacked_mutex_expire": 0.5,
    "fanout_prefix": "true",
    "fanout_patterns": 0,
    "confirm_publish": "no",
    "connect_timeout": -1,
    "read_timeout": "soon",
    "write_timeout": float("nan"),
}


def test_every_option_has_bad_values_in_this_table() -> None:
    assert set(BAD) == set(conf.OPTIONS_BY_FIELD)
    assert set(BAD_SETTINGS_ONLY) == conf.SETTINGS_ONLY_KEYS
    assert set(BAD_TRANSPORT) == set(TRANSPORT_OPTIONS)


def cases() -> list[Any]:
    return [
        pytest.param(option, value, id=f"{option.field}={value[:20]!r}")
        for option in conf.OPTIONS
        for value in BAD[option.field]
    ]


def one_line(message: str, *, naming: str) -> None:
    assert "\n" not in message and naming in message, message


@pytest.mark.parametrize(("option", "value"), cases())
def test_a_bad_settings_value_is_refused_in_one_line_naming_the_key(
    option: conf.Option, value: str
) -> None:
    with pytest.raises(conf.SettingsError) as info:
        conf.read_settings({option.settings_key: value})
    one_line(str(info.value), naming=f"settings.DJWORKER[{option.settings_key!r}]")


@pytest.mark.parametrize(("option", "value"), cases())
def test_a_bad_environment_value_is_refused_in_one_line_naming_the_variable(
    option: conf.Option, value: str
) -> None:
    with pytest.raises(ConfigurationError) as info:
        conf.read_env({option.env_var: value})
    one_line(str(info.value), naming=option.env_var)


@pytest.mark.parametrize(
    ("key", "value"),
    [(key, value) for key, values in BAD_SETTINGS_ONLY.items() for value in values],
)
def test_a_bad_settings_only_value_is_refused_in_one_line_naming_the_key(
    key: str, value: Any
) -> None:
    with pytest.raises(conf.SettingsError) as info:
        conf.read_settings({key: value})
    one_line(str(info.value), naming=f"settings.DJWORKER[{key!r}]")


def parse_cli(*args: str) -> Any:
    return Command().create_parser("manage.py", "runworker").parse_args(list(args))


@pytest.mark.parametrize(("option", "value"), cases())
def test_a_bad_command_line_value_is_refused_in_one_line_naming_the_flag(
    option: conf.Option, value: str
) -> None:
    with pytest.raises(CommandError) as info:
        parse_cli(f"{option.cli_flag}={value}")
    one_line(str(info.value), naming=option.cli_flag)


@pytest.mark.parametrize(
    ("flag", "value"), [(flag, value) for flag, values in BAD_CLI_ONLY.items() for value in values]
)
def test_a_bad_command_line_only_value_is_refused_in_one_line(flag: str, value: str) -> None:
    with pytest.raises(CommandError) as info:
        parse_cli(f"{flag}={value}")
    one_line(str(info.value), naming=flag)


def test_a_profile_name_of_100_slug_characters_is_accepted() -> None:
    assert parse_cli("--profile", "p" * 100).profile_name == "p" * 100


@pytest.mark.parametrize(("key", "value"), BAD_TRANSPORT.items(), ids=list(BAD_TRANSPORT))
def test_a_bad_transport_option_is_refused_in_one_line_naming_the_option(
    key: str, value: Any
) -> None:
    with pytest.raises(conf.SettingsError) as info:
        conf.read_settings({"BROKER_TRANSPORT_OPTIONS": {key: value}})
    one_line(str(info.value), naming=f"[{key!r}]")


def test_an_unknown_transport_option_is_refused_listing_the_known_ones() -> None:
    with pytest.raises(ConfigurationError, match="unknown option 'visiblity_timeout'; known"):
        parse_transport_options({"visiblity_timeout": 10}, name="options")


def test_good_transport_options_pass_unchanged() -> None:
    options = {"visibility_timeout": 30, "polling_interval": 0.5, "database": "default"}
    assert (
        conf.read_settings({"BROKER_TRANSPORT_OPTIONS": options})["broker_transport_options"]
        == options
    )


def test_an_unknown_transport_lists_the_known_ones() -> None:
    with pytest.raises(ConfigurationError) as info:
        conf.parse_broker_url("sqs://x", name="--broker")
    assert "use one of django://, redis://, rediss://, amqp://" in str(info.value)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("amqp://u:first@a//;amqp://u:second@b//", "amqp://u:***@a//;amqp://u:***@b//"),
        ("redis://:pw@h:6379/0;redis://:pw2@h2/0", "redis://:***@h:6379/0;redis://:***@h2/0"),
        ("redis://h/0", "redis://h/0"),
        ("redis://:x@[::1", "***"),
    ],
)
def test_every_password_of_a_failover_url_is_hidden(url: str, shown: str) -> None:
    assert redact_url(url) == shown


@pytest.mark.parametrize("missing", ["redis", "packaging"])
def test_a_redis_url_without_the_redis_extra_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, missing: str
) -> None:
    import sys

    # As if the package were not installed: importing it fails, and so does what imports it.
    import kombu.transport

    if missing == "packaging" and kombu.VERSION[:2] < (5, 6):
        pytest.skip(f"kombu {kombu.__version__}'s redis transport does not import packaging")

    import djworker.transport

    monkeypatch.setitem(sys.modules, missing, None)
    for module in ("djworker.transport.redis", "kombu.transport.redis", "packaging.version"):
        monkeypatch.delitem(sys.modules, module, raising=False)
    # "from kombu.transport import redis" takes the package's attribute if an import set it
    for package in (kombu.transport, djworker.transport):
        monkeypatch.delattr(package, "redis", raising=False)
    with pytest.raises(ConfigurationError) as info:
        conf.parse_broker_url("redis://127.0.0.1:6379/0", name="--broker")
    one_line(str(info.value), naming="pip install 'djworker[redis]'")


def test_the_former_profile_flags_still_work_as_aliases() -> None:
    options = parse_cli("--config", "p" * 100)
    assert options.profile_name == "p" * 100
    assert parse_cli("--create-config").create_profile is True
