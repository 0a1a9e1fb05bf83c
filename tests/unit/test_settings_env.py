"""Transport options read from the environment by a settings module."""

from __future__ import annotations

import pytest

from djworker.settings_env import EnvironmentValueError, transport_options_from_env


@pytest.mark.parametrize("environ", [{}, {"DJWORKER_BROKER_TRANSPORT_OPTIONS": "  "}])
def test_an_unset_or_blank_variable_gives_no_options(environ: dict[str, str]) -> None:
    assert transport_options_from_env(environ=environ) == {}


def test_a_json_object_is_returned_as_it_is() -> None:
    environ = {"OPTS": '{"visibility_timeout": 30, "sep": ":"}'}
    assert transport_options_from_env("OPTS", environ) == {"visibility_timeout": 30, "sep": ":"}


def test_a_long_value_is_cut_and_its_url_passwords_hidden_in_the_refusal() -> None:
    value = '{"note": "amqp://user:hunter2@host//", ' + '"x": 1, ' * 20
    with pytest.raises(EnvironmentValueError) as refused:
        transport_options_from_env("OPTS", {"OPTS": value})
    message = str(refused.value)
    assert message.startswith(
        'OPTS expects a JSON object of transport options, like {"visibility_timeout": 3600}; '
        'got \'{"note": "amqp://user:***@host//", '
    )
    assert "...': not JSON (" in message and "hunter2" not in message
    assert "\n" not in message
