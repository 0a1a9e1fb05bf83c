"""The private kombu members djworker's transports rely on exist in the installed kombu.

kombu's underscore names are not part of its API: one may be missing from an older release (as
``redis.Channel._flush_brpop_reauth`` is before kombu 5.7) or go in a newer one. This lists each
one the transports use, checks it exists in the kombu installed, and fails with one line naming
the member, the kombu class and the kombu version. A second test reads the transports' source,
so a private member used later without being listed here fails too.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import textwrap
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import kombu
import pytest

import djworker.transport

TRANSPORT_DIR = Path(djworker.transport.__file__).parent
#: modules outside the transport package that subclass kombu too
OTHER_MODULES = {"djworker.broker_schemes": TRANSPORT_DIR.parent / "broker_schemes.py"}


@dataclass(frozen=True)
class Member:
    #: the kombu class that provides it, as ``module:Class``
    owner: str
    name: str
    #: djworker works without it (it looks the member up and falls back); the kombu versions
    #: that lack it are said here
    optional: str = ""


VIRTUAL_TRANSPORT = "kombu.transport.virtual:Transport"
VIRTUAL_CHANNEL = "kombu.transport.virtual:Channel"
REDIS_CHANNEL = "kombu.transport.redis:Channel"
REDIS_QOS = "kombu.transport.redis:QoS"
REDIS_TRANSPORT = "kombu.transport.redis:Transport"
CONNECTION = "kombu.connection:Connection"

KOMBU_PRIVATE_MEMBERS = [
    # django:// (djworker/transport/__init__.py, channel.py)
    Member(VIRTUAL_TRANSPORT, "_deliver"),
    Member(VIRTUAL_CHANNEL, "_get_message_priority"),
    Member(VIRTUAL_CHANNEL, "_tag_to_queue"),
    Member(VIRTUAL_CHANNEL, "_inplace_augment_message"),
    Member(VIRTUAL_CHANNEL, "_active_queues"),
    # redis (djworker/transport/redis.py)
    Member(REDIS_QOS, "_delivered"),
    Member(REDIS_QOS, "_dirty"),
    Member(REDIS_CHANNEL, "_brpop_read"),
    Member(REDIS_CHANNEL, "_closing"),
    Member(REDIS_CHANNEL, "_consumers"),
    Member(REDIS_CHANNEL, "_create_client"),
    Member(REDIS_CHANNEL, "_disconnect_pools"),
    Member(REDIS_CHANNEL, "_get_message_priority"),
    Member(REDIS_CHANNEL, "_inplace_augment_message"),
    Member(REDIS_CHANNEL, "_in_poll"),
    Member(REDIS_CHANNEL, "_q_for_pri"),
    Member(REDIS_CHANNEL, "_queue_cycle"),
    Member(REDIS_CHANNEL, "_tag_to_queue"),
    Member(REDIS_CHANNEL, "_flush_brpop_reauth", optional="absent before kombu 5.7"),
    Member(REDIS_TRANSPORT, "_callbacks"),
    Member(REDIS_TRANSPORT, "_deliver"),
    # every scheme (djworker/broker_schemes.py)
    Member(CONNECTION, "_init_params"),
]


def kombu_class(path: str) -> type:
    module, _, name = path.partition(":")
    try:
        return getattr(importlib.import_module(module), name)  # type: ignore[no-any-return]
    except ImportError as exc:  # kombu's redis transport needs the redis package
        pytest.skip(f"{module} cannot be imported here: {exc}")


@cache
def set_in_init(cls: type) -> frozenset[str]:
    """The ``self.<name>`` attributes a class's ``__init__`` assigns (none if it has none)."""
    init = vars(cls).get("__init__")
    if init is None:
        return frozenset()
    tree = ast.parse(textwrap.dedent(inspect.getsource(init)))
    return frozenset(
        node.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and isinstance(node.ctx, ast.Store)
        and isinstance(node.value, ast.Name)
        and node.value.id == "self"
    )


def kombu_provides(cls: type, name: str) -> bool:
    """A method or class attribute, or an instance attribute set in an ``__init__`` of its MRO."""
    return hasattr(cls, name) or any(
        name in set_in_init(klass)
        for klass in cls.__mro__
        if klass.__module__.split(".")[0] in ("kombu", "amqp")
    )


@pytest.mark.parametrize("member", KOMBU_PRIVATE_MEMBERS, ids=lambda m: f"{m.owner}.{m.name}")
def test_each_private_kombu_member_the_transports_use_exists(member: Member) -> None:
    cls = kombu_class(member.owner)
    if kombu_provides(cls, member.name):
        return
    where = f"{member.owner.replace(':', '.')}.{member.name}"
    if member.optional:
        pytest.skip(
            f"{where} is not in kombu {kombu.__version__} ({member.optional}); djworker "
            "does without it"
        )
    pytest.fail(
        f"djworker's transports use {where}, which kombu {kombu.__version__} does not have",
        pytrace=False,
    )


# -- completeness: every private access in the transports' source is listed above ---------------


def _uses(tree: ast.AST) -> list[tuple[str, str, int]]:
    """(``self``/``super()``/``self.connection``/``channel``, name, line) per private use."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            name, target = node.attr, node.value
        elif (  # getattr(self, "_name", default): a member looked up because it may be absent
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in ("getattr", "hasattr")
            and len(node.args) >= 2
            and isinstance(node.args[1], ast.Constant)
            and isinstance(node.args[1].value, str)
        ):
            name, target = node.args[1].value, node.args[0]
        else:
            continue
        if not name.startswith("_") or name.startswith("__"):
            continue
        if isinstance(target, ast.Name) and target.id == "self":
            found.append(("self", name, node.lineno))
        elif (
            isinstance(target, ast.Call)
            and isinstance(target.func, ast.Name)
            and target.func.id == "super"
        ):
            found.append(("super()", name, node.lineno))
        elif (
            isinstance(target, ast.Attribute)
            and target.attr == "connection"
            and isinstance(target.value, ast.Name)
            and target.value.id == "self"
        ):
            found.append(("self.connection", name, node.lineno))
        elif isinstance(target, ast.Name) and target.id == "channel":
            found.append(("channel", name, node.lineno))  # one of a transport's channels
    return found


def _djworker_defines(cls: type, name: str) -> bool:
    """djworker's own class (or a djworker base) defines it, or sets it in its ``__init__``."""
    return any(
        name in vars(klass) or name in set_in_init(klass)
        for klass in cls.__mro__
        if klass.__module__.startswith("djworker.")
    )


def _first_kombu_class(cls: type) -> type:
    return next(k for k in cls.__mro__ if k.__module__.split(".")[0] in ("kombu", "amqp"))


def used_private_members() -> list[tuple[Member, str]]:
    """Each private kombu member the transports' source uses, and where (``file:line``)."""
    used = []
    modules = {
        f"djworker.transport.{path.stem}".removesuffix(".__init__"): path
        for path in sorted(TRANSPORT_DIR.glob("*.py"))
    }
    for module_name, path in {**modules, **OTHER_MODULES}.items():
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            pytest.skip(f"{module_name} cannot be imported here: {exc}")
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ClassDef):
                continue
            cls = getattr(module, node.name)
            if not any(k.__module__.startswith(("kombu.", "amqp.")) for k in cls.__mro__):
                continue
            for target, name, line in _uses(node):
                if target == "self" and _djworker_defines(cls, name):
                    continue
                base = _first_kombu_class(cls)
                if target == "self.connection":  # a channel's connection is its transport
                    base = importlib.import_module(base.__module__).Transport
                elif target == "channel":  # a transport's channel, of the same kombu module
                    base = importlib.import_module(base.__module__).Channel
                owner = next(k for k in base.__mro__ if k.__module__.startswith("kombu"))
                owner_path = f"{owner.__module__}:{owner.__qualname__}"
                used.append((Member(owner_path, name), f"{path.name}:{line}"))
    return used


def canonical(path: str) -> str:
    """``module:Class`` where kombu defines it (``virtual:Channel`` is in ``virtual.base``)."""
    cls = kombu_class(path)
    return f"{cls.__module__}:{cls.__qualname__}"


def test_the_list_names_every_private_kombu_member_the_transports_use() -> None:
    listed = {(canonical(m.owner), m.name) for m in KOMBU_PRIVATE_MEMBERS}
    missing = sorted(
        {
            f"{m.owner.replace(':', '.')}.{m.name} (djworker/transport/{where})"
            for m, where in used_private_members()
            if (m.owner, m.name) not in listed
        }
    )
    assert not missing, (
        "add to KOMBU_PRIVATE_MEMBERS the private kombu members the transports now use: "
        + ", ".join(missing)
    )


def test_the_list_names_no_member_the_transports_no_longer_use() -> None:
    used = {(m.owner, m.name) for m, _ in used_private_members()}
    stale = [
        f"{m.owner.replace(':', '.')}.{m.name}"
        for m in KOMBU_PRIVATE_MEMBERS
        if (canonical(m.owner), m.name) not in used
    ]
    assert not stale, f"remove from KOMBU_PRIVATE_MEMBERS what no transport uses: {stale}"


# -- the whole package: every private member of another object is djworker's, kombu's, or named --

PACKAGE_DIR = TRANSPORT_DIR.parent

#: private members of other libraries that djworker uses outside its transports, by name, with
#: their owner: none is kombu's, so none belongs in KOMBU_PRIVATE_MEMBERS
OTHER_PRIVATE_MEMBERS = {
    "_meta": "Django's Model (documented as the Model _meta API)",
    "_exit": "os",
    "_replace": "urllib.parse.SplitResult (a namedtuple)",
    "_str": "traceback.TracebackException (Python 3.11+)",
    "_connection_pools": "Django's PostgreSQL DatabaseWrapper",
    "_pool": "psycopg_pool.ConnectionPool",
    "_closed": "psycopg_pool.ConnectionPool",
}


def _is_own_target(target: ast.AST) -> bool:
    return (isinstance(target, ast.Name) and target.id in ("self", "cls")) or (
        isinstance(target, ast.Call)
        and isinstance(target.func, ast.Name)
        and target.func.id == "super"
    )


def _private_names_defined(tree: ast.AST) -> set[str]:
    """Private names a djworker module defines: functions, class attributes, ``self._x = ...``."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif (
            isinstance(node, ast.Attribute)
            and isinstance(node.ctx, ast.Store)
            and _is_own_target(node.value)
        ):
            names.add(node.attr)
    return {name for name in names if name.startswith("_") and not name.startswith("__")}


def _private_uses_on_other_objects(tree: ast.AST) -> list[tuple[str, int]]:
    """``obj._name`` and ``getattr(obj, "_name")`` where ``obj`` is not ``self``/``cls``."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            name, target = node.attr, node.value
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in ("getattr", "hasattr", "setattr")
            and len(node.args) >= 2
            and isinstance(node.args[1], ast.Constant)
            and isinstance(node.args[1].value, str)
        ):
            name, target = node.args[1].value, node.args[0]
        else:
            continue
        if name.startswith("_") and not name.startswith("__") and not _is_own_target(target):
            found.append((name, node.lineno))
    return found


def test_every_private_member_djworker_uses_on_another_object_is_its_own_or_listed() -> None:
    """A private kombu member reached through a local variable (``channel._x``, ``qos._x``) or
    from outside the transports is listed too."""
    trees = {path: ast.parse(path.read_text()) for path in sorted(PACKAGE_DIR.rglob("*.py"))}
    own = set().union(*(_private_names_defined(tree) for tree in trees.values()))
    kombu_names = {m.name for m in KOMBU_PRIVATE_MEMBERS}
    unlisted = sorted(
        f"{name} ({path.relative_to(PACKAGE_DIR.parent)}:{line})"
        for path, tree in trees.items()
        for name, line in _private_uses_on_other_objects(tree)
        if name not in own and name not in kombu_names and name not in OTHER_PRIVATE_MEMBERS
    )
    assert not unlisted, (
        "private members of another library, in neither KOMBU_PRIVATE_MEMBERS nor "
        "OTHER_PRIVATE_MEMBERS: " + ", ".join(unlisted)
    )
