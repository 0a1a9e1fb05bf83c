"""What a worker takes from a transport before kombu decodes it, and what it refuses.

kombu builds its ``Message`` from a transport's raw payload and decompresses the body right
there, before any check of the content type, so a few hundred bytes of bz2 can grow to
gigabytes in the worker. djworker publishes uncompressed UTF-8 JSON only, so anything else is
refused before kombu sees it: a compression header, another content encoding, a body over
``message.MAX_BODY_BYTES``. The virtual transports (``django://`` and Redis) also hand kombu a
payload it must be able to build a ``Message`` from; ``payload_problem`` checks that shape, so
a row or list item that is not one is removed and logged instead of raising at every delivery.
"""

from __future__ import annotations

import binascii
from base64 import b64decode
from collections.abc import Mapping
from typing import Any

from kombu.utils.json import loads

from djworker import message

#: the content encodings kombu's JSON serializer publishes (compared in lower case)
ACCEPTED_ENCODINGS = frozenset({"utf-8", "utf8"})
#: the body encodings kombu's virtual channels use
ACCEPTED_BODY_ENCODINGS = frozenset({"base64", "utf-8"})
#: a base64 body is a third longer than the JSON it carries
_MAX_ENCODED_BODY = message.MAX_BODY_BYTES * 4 // 3 + 4


def refusal(*, headers: Any, content_encoding: Any, body_size: int) -> str | None:
    """Why a message must be refused before its body is decoded; None if it may be decoded."""
    if headers is not None and not isinstance(headers, Mapping):
        return f"message headers must be a mapping; got {type(headers).__name__}"
    compression = (headers or {}).get("compression")
    if compression is not None:
        return (
            f"compressed messages are refused (compression={str(compression)[:80]!r}); "
            "djworker publishes uncompressed JSON"
        )
    if content_encoding is not None and (
        not isinstance(content_encoding, str) or content_encoding.lower() not in ACCEPTED_ENCODINGS
    ):
        return (
            f"content encoding {str(content_encoding)[:80]!r} is refused; djworker publishes "
            f"{', '.join(sorted(ACCEPTED_ENCODINGS))}"
        )
    if body_size > _MAX_ENCODED_BODY:
        return f"message body is {body_size} bytes; at most {message.MAX_BODY_BYTES} are allowed"
    return None


def parse(raw: str | bytes, *, tagged: bool = False) -> tuple[dict[str, Any] | None, str | None]:
    """A virtual transport's raw payload as a dict, or None and the reason it is not one.

    ``tagged`` as for ``payload_problem``.
    """
    if len(raw) > _MAX_ENCODED_BODY * 2:
        return None, f"payload is {len(raw)} bytes; at most {message.MAX_BODY_BYTES} are allowed"
    try:
        payload = loads(raw)
    except Exception as exc:  # ValueError, or RecursionError for absurd nesting
        return None, f"payload is not JSON: {type(exc).__name__}: {str(exc)[:200]}"
    try:
        problem = payload_problem(payload, tagged=tagged)
    except Exception as exc:  # a shape nobody foresaw is refused, not raised at every delivery
        problem = f"payload could not be checked: {type(exc).__name__}: {str(exc)[:200]}"
    return (None, problem) if problem else (payload, None)


def payload_problem(payload: Any, *, tagged: bool = False) -> str | None:
    """Why kombu could not build a ``Message`` from a virtual transport's payload, or refuses it.

    ``tagged``: the delivery tag and exchange come with the payload (Redis), rather than from
    the transport (``django://``).
    """
    if not isinstance(payload, dict):
        return f"payload must be a JSON object; got {type(payload).__name__}"
    properties = payload.get("properties")
    if not isinstance(properties, dict):
        return f"payload 'properties' must be an object; got {type(properties).__name__}"
    info = properties.get("delivery_info")
    if tagged:
        if not isinstance(properties.get("delivery_tag"), str):
            return "payload has no string delivery_tag"
        if not isinstance(info, dict) or "exchange" not in info or "routing_key" not in info:
            return "payload has no delivery_info with an exchange and a routing key"
    elif info is not None and not isinstance(info, dict):
        return f"payload 'delivery_info' must be an object; got {type(info).__name__}"
    for key in ("content-type", "content-encoding"):
        if payload.get(key) is not None and not isinstance(payload[key], str):
            return f"payload {key!r} must be a string; got {type(payload[key]).__name__}"
    body = payload.get("body")
    if body is not None and not isinstance(body, str):
        return f"payload 'body' must be a string; got {type(body).__name__}"
    problem = refusal(
        headers=payload.get("headers"),
        content_encoding=payload.get("content-encoding"),
        body_size=len(body or ""),
    )
    if problem:
        return problem
    body_encoding = properties.get("body_encoding")
    if body_encoding is not None and (
        not isinstance(body_encoding, str) or body_encoding not in ACCEPTED_BODY_ENCODINGS
    ):
        # kombu looks its codecs up by the exact name, so "BASE64" would fail there.
        return f"body encoding {str(body_encoding)[:80]!r} is refused; expected 'base64'"
    if body and body_encoding == "base64":
        try:
            b64decode(body, validate=True)
        except (binascii.Error, ValueError) as exc:
            return f"body is not valid base64: {exc}"
    return None
