"""One table says what djworker does for each broker URL scheme (``djworker.broker_schemes``).

Pure mapping: no broker is contacted (kombu connects lazily).
"""

from __future__ import annotations

import kombu
import pytest

from djworker import broker_schemes
from djworker.broker import Broker
from djworker.broker_conf import parse_broker_url
from djworker.broker_schemes import PROFILES, REFUSED, BrokerConnection, profile_for, scheme_of
from djworker.exceptions import ConfigurationError
from djworker.message import MAX_PRIORITY
from djworker.queues import QueueInspector, inspector_for


@pytest.mark.parametrize(
    ("url", "scheme"),
    [
        ("redis://h:6379/0", "redis"),
        ("REDISS://h:6380/0", "rediss"),
        ("redis+socket:///tmp/redis.sock", "redis"),
        ("django://", "django"),
        ("amqp://guest@h//", "amqp"),
    ],
)
def test_the_scheme_of_a_url_is_the_transport_part_in_lower_case(url: str, scheme: str) -> None:
    assert scheme_of(url) == scheme


@pytest.mark.parametrize(
    ("url", "transport"),
    [
        ("django://", "djworker.transport:Transport"),
        ("redis://127.0.0.1:6379/0", "djworker.transport.redis:Transport"),
        ("rediss://127.0.0.1:6380/0", "djworker.transport.redis:Transport"),
        ("redis+socket:///tmp/redis.sock", "djworker.transport.redis:Transport"),
        ("amqp://guest:guest@127.0.0.1:5672//", "djworker.transport.rabbitmq:Transport"),
        ("pyamqp://guest:guest@127.0.0.1:5672//", "djworker.transport.rabbitmq:Transport"),
        ("amqps://guest:guest@127.0.0.1:5671//", "djworker.transport.rabbitmq:SSLTransport"),
    ],
)
def test_each_scheme_connects_through_djworkers_transport(url: str, transport: str) -> None:
    connection = BrokerConnection(url)
    assert connection.transport_cls == transport


def test_rediss_keeps_kombus_tls_handling() -> None:
    assert BrokerConnection("rediss://127.0.0.1:6380/0").ssl


def test_every_part_of_a_failover_url_gets_djworkers_transport() -> None:
    connection = BrokerConnection("redis://127.0.0.1:1/0;rediss://127.0.0.1:2/0")
    connection.switch("rediss://127.0.0.1:2/0")  # what kombu does when the first part fails
    assert connection.transport_cls == "djworker.transport.redis:Transport"
    assert connection.ssl


def test_kombus_own_aliases_stay_kombus() -> None:
    assert kombu.Connection("redis://127.0.0.1:6379/0").transport_cls == "redis"
    assert "django" not in kombu.transport.TRANSPORT_ALIASES


def test_redis_serves_lower_numbers_first_so_priorities_are_turned_round() -> None:
    redis = profile_for("redis://h/0")
    assert [redis.broker_priority(p) for p in (0, 9)] == [MAX_PRIORITY, 0]
    for url in ("django://", "amqp://h//"):
        assert [profile_for(url).broker_priority(p) for p in (0, 9)] == [0, 9]


def test_redis_gets_ten_priority_steps_unless_the_user_set_them() -> None:
    assert Broker(url="rediss://h/0").transport_options["priority_steps"] == list(range(10))
    given = Broker(url="redis://h/0", transport_options={"priority_steps": [0, 5]})
    assert given.transport_options["priority_steps"] == [0, 5]
    assert "priority_steps" not in Broker(url="django://").transport_options


def test_a_failover_url_takes_the_profile_of_its_first_part() -> None:
    assert profile_for("rediss://a/0;redis://b/0") is PROFILES["rediss"]


def test_a_scheme_outside_the_table_keeps_kombus_transport_and_order() -> None:
    broker = Broker(url="memory://")
    assert broker.connection().transport_cls == "memory"
    assert broker.broker_priority(9) == 9


@pytest.mark.parametrize("scheme", sorted(REFUSED))
def test_a_refused_scheme_is_refused_at_configuration_naming_it_and_what_is_allowed(
    scheme: str,
) -> None:
    with pytest.raises(ConfigurationError) as refused:
        parse_broker_url(f"{scheme}://127.0.0.1:26379", name="BROKER_URL")
    message = str(refused.value)
    assert f"uses {scheme}://" in message
    assert "redis://, rediss://, amqp://" in message


def test_a_refused_scheme_in_any_part_of_a_failover_url_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="sentinel://"):
        parse_broker_url("redis://h/0;sentinel://h:26379", name="BROKER_URL")


def test_the_redis_and_amqp_families_cover_their_tls_schemes() -> None:
    assert {PROFILES[s].family for s in ("redis", "rediss")} == {"redis"}
    assert {PROFILES[s].family for s in ("amqp", "amqps", "pyamqp")} == {"amqp"}


@pytest.mark.parametrize("scheme", list(PROFILES))
def test_each_scheme_names_the_queue_inspector_of_its_broker_family(scheme: str) -> None:
    inspector = inspector_for(Broker(url=f"{scheme}://localhost/"))
    assert isinstance(inspector, QueueInspector)
    assert inspector.family == PROFILES[scheme].family


def test_a_scheme_without_an_inspector_is_refused_naming_those_that_have_one() -> None:
    with pytest.raises(ValueError, match="'memory'; djworker inspects django, redis, rediss"):
        inspector_for(Broker(url="memory://"))


def test_a_scheme_kombu_has_no_alias_for_runs_on_the_transport_its_profile_names(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A new broker is its SchemeProfile (and its inspector, and maybe its transport): nothing
    # else needs to know the scheme, even one kombu cannot read a URL of (as django://).
    monkeypatch.setattr(broker_schemes, "PROFILES", {**PROFILES, "valkey": PROFILES["redis"]})
    connection = BrokerConnection("valkey://127.0.0.1:6379/3")
    assert connection.transport_cls == PROFILES["redis"].transport
    assert (connection.hostname, connection.virtual_host) == ("127.0.0.1", "3")
    assert type(inspector_for(Broker(url="valkey://127.0.0.1:6379/3"))).family == "redis"
