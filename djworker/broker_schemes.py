"""What djworker does for each broker URL scheme: its transport, priorities and defaults.

One table, ``PROFILES``, maps a URL scheme to a ``SchemeProfile``: the djworker transport that
runs it, the client library it needs, which way its priorities go, the transport options
djworker sets unless the user did and the inspector that reads its queue depths.
``BrokerConnection`` is kombu's ``Connection`` with that table applied, so every connection
djworker opens (publishing, consuming, inspecting queues) gets djworker's transport for its
scheme, a failover URL's other parts included, while kombu's own aliases stay untouched for
other code in the process.

Schemes djworker knows but does not run on are in ``REFUSED`` with the reason, which the
settings check quotes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

from kombu import Connection
from kombu.transport import TRANSPORT_ALIASES

from djworker.message import MAX_PRIORITY

__all__ = ["PROFILES", "REFUSED", "BrokerConnection", "SchemeProfile", "profile_for", "scheme_of"]


@dataclass(frozen=True)
class SchemeProfile:
    """How djworker runs the broker of one URL scheme."""

    #: the broker behind the scheme, shared by its plain and TLS schemes: django, redis, amqp
    family: str
    #: ``module:Class`` of the kombu transport djworker uses
    transport: str
    #: the module whose import proves the client library is installed ('' for none)
    client_module: str = ""
    #: what to ``pip install`` when ``client_module`` is missing
    requirement: str = "djworker"
    #: True if the broker delivers higher priority numbers first (djworker's own order)
    higher_first: bool = True
    #: transport options djworker sets unless the user set them
    default_options: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    #: ``module:Class`` of its ``QueueInspector`` (``djworker.queues``), imported when used
    inspector: str = ""

    def broker_priority(self, priority: int) -> int:
        """djworker's priority (0-9, higher first) as this broker's number."""
        return priority if self.higher_first else MAX_PRIORITY - priority

    def options(self, given: Mapping[str, Any] | None) -> dict[str, Any]:
        """``given`` transport options on top of this scheme's defaults."""
        return {**self.default_options, **(given or {})}


_DJANGO = SchemeProfile(
    family="django",
    transport="djworker.transport:Transport",
    inspector="djworker.queues.database:DatabaseInspector",
)
_REDIS = SchemeProfile(
    family="redis",
    transport="djworker.transport.redis:Transport",
    client_module="djworker.transport.redis",
    requirement="djworker[redis]",
    # kombu's Redis transport serves lower numbers first and has four levels by default;
    # djworker offers ten levels, higher first, on every broker.
    higher_first=False,
    default_options=MappingProxyType({"priority_steps": list(range(MAX_PRIORITY + 1))}),
    inspector="djworker.queues.redis:RedisInspector",
)
_AMQP = SchemeProfile(
    family="amqp",
    transport="djworker.transport.rabbitmq:Transport",
    client_module="kombu.transport.pyamqp",
    inspector="djworker.queues.amqp:AmqpInspector",
)

#: URL scheme -> its profile; ``rediss://`` and ``amqps://`` keep kombu's TLS handling
PROFILES: Mapping[str, SchemeProfile] = MappingProxyType(
    {
        "django": _DJANGO,
        "redis": _REDIS,
        "rediss": _REDIS,
        "amqp": _AMQP,
        "amqps": dataclasses.replace(_AMQP, transport="djworker.transport.rabbitmq:SSLTransport"),
        "pyamqp": _AMQP,
    }
)

#: schemes kombu knows that djworker refuses, and why
REFUSED: Mapping[str, str] = MappingProxyType(
    {
        "sentinel": "djworker's Redis transport does not follow Redis Sentinel failovers; give "
        "the master's redis:// or rediss:// URL (a ';'-separated list of them fails over in "
        "order)",
        "memory": "kombu's memory:// transport lives inside one process, so no worker could "
        "receive what a web process publishes",
    }
)

#: a scheme outside PROFILES (kombu's memory:// in tests): kombu's transport, kombu's order
KOMBU_DEFAULT = SchemeProfile(family="kombu", transport="")


def scheme_of(url: str) -> str:
    """The transport part of ``url``'s scheme: ``redis`` for ``redis+socket://``, lower-case."""
    return urlsplit(url.strip()).scheme.lower().split("+")[0]


def profile_for(url: str) -> SchemeProfile:
    """The profile of ``url``'s scheme (the first part of a failover URL)."""
    return PROFILES.get(scheme_of(url.split(";")[0]), KOMBU_DEFAULT)


class BrokerConnection(Connection):  # type: ignore[misc]  # kombu is untyped
    """kombu's ``Connection`` on djworker's transport for each scheme of ``PROFILES``.

    kombu first reads the URL as usual (``rediss://`` gets kombu's TLS defaults that way); the
    transport class is then replaced by djworker's. kombu calls ``_init_params`` again when a
    failover URL switches to its next part, so every part gets djworker's transport too.
    """

    def __init__(self, hostname: str, **kwargs: Any) -> None:
        scheme = scheme_of(hostname.split(";")[0])
        if not kwargs.get("transport") and scheme in PROFILES and scheme not in TRANSPORT_ALIASES:
            # kombu has no alias to read this scheme's URL with (django://): the scheme's own
            # transport is named up front instead.
            kwargs["transport"] = PROFILES[scheme].transport
        super().__init__(hostname, **kwargs)

    def _init_params(self, *args: Any, **params: Any) -> None:
        super()._init_params(*args, **params)
        name = self.transport_cls
        if isinstance(name, str) and name in PROFILES:
            self.transport_cls = PROFILES[name].transport
