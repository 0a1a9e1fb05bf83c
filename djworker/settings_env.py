"""Reading djworker's structured settings from the environment inside a settings module.

``settings.DJWORKER["BROKER_TRANSPORT_OPTIONS"]`` is read from settings only (the web processes
and the workers must agree on it), so a project that takes it from the environment parses the
JSON in its settings module. A mistake there would otherwise surface as a traceback from the
settings import, before Django or djworker could say what is wrong; ``transport_options_from_env``
refuses it in one line that names the variable, the value (with any URL password hidden) and
what is expected. It imports nothing from Django but its exceptions, so a settings module may
call it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

from djworker.broker_conf import hide_url_passwords, shorten

#: the environment variable the example project reads its transport options from
TRANSPORT_OPTIONS_VAR = "DJWORKER_BROKER_TRANSPORT_OPTIONS"

#: what a parsed JSON value was, by the name JSON gives it
_JSON_KINDS = {list: "array", str: "string", int: "number", float: "number", bool: "boolean"}
_JSON_KINDS[type(None)] = "null"

_EXPECTED = 'a JSON object of transport options, like {"visibility_timeout": 3600}'


class EnvironmentValueError(SystemExit):
    """A malformed environment value, found while the settings module is imported.

    A ``SystemExit`` so that the process stops with the one-line message and no traceback: no
    logging nor Django error handling is set up that early.
    """


def transport_options_from_env(
    name: str = TRANSPORT_OPTIONS_VAR, environ: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """The JSON object in environment variable ``name``; ``{}`` when it is unset or empty.

    Only the JSON is checked here; each option and its value are checked with the rest of the
    settings when djworker starts (``broker_conf.parse_transport_options``).
    """
    raw = (os.environ if environ is None else environ).get(name, "")
    if not raw.strip():
        return {}
    try:
        value = json.loads(raw)
    except ValueError as exc:
        problem = f"not JSON ({exc})"
    else:
        if isinstance(value, dict):
            return value
        problem = f"a JSON {_JSON_KINDS.get(type(value), 'value')}, not an object"
    shown = shorten(hide_url_passwords(raw))
    raise EnvironmentValueError(f"{name} expects {_EXPECTED}; got {shown!r}: {problem}")
