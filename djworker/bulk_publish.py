"""``Task.enqueue_many``: many calls of one task published at once.

Every call is checked (its arguments, then its message) before anything is written, so a bad
call refuses the whole lot and names its index and value. The calls then go out in batches:
per batch, one statement inserts the READY rows (``ready_rows``) and one broker round trip
publishes the messages (``Broker.publish_many``). If a publish fails, the rows of the calls it
did not publish are deleted and ``PublishInterrupted`` says how many went out: nothing is lost
and no READY row waits for a message that does not exist.

Inside ``transaction.atomic`` (on the result database) the rows and messages are written when
the transaction commits, like ``delay_on_commit``: a rollback publishes nothing. The returned
``AsyncResult`` ids are known at once either way.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from django.db import connections, router, transaction

from djworker import message, ready_rows
from djworker.exceptions import InvalidMessage, PublishInterrupted
from djworker.log_safety import get_logger
from djworker.message import Envelope
from djworker.models.results import TaskResult
from djworker.result import AsyncResult

logger = get_logger(__name__)


class PublishedTask(Protocol):
    """What publishing many calls reads of their ``djworker.task_definition.Task``."""

    @property
    def name(self) -> str: ...
    @property
    def ignore_result(self) -> bool: ...
    def stored_arguments(
        self, args: list[Any], kwargs: dict[str, Any]
    ) -> tuple[list[Any], dict[str, Any]]: ...


@dataclass(frozen=True, init=False)
class Arguments:
    """One call's positional and keyword arguments, for ``Task.enqueue_many``.

    ``Arguments(1, 2, flag=True)`` stands for ``task.delay(1, 2, flag=True)``. A plain tuple or
    list is positional arguments only, a plain dict keyword arguments only.
    """

    args: tuple[Any, ...]
    kwargs: dict[str, Any] = field(default_factory=dict)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        object.__setattr__(self, "args", args)
        object.__setattr__(self, "kwargs", kwargs)


def enqueue_many(
    task: PublishedTask, calls: Iterable[Any], *, batch_size: int, options: dict[str, Any]
) -> list[AsyncResult]:
    """See ``Task.enqueue_many``; ``options`` are ``Task.call_options``."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size expects a whole number >= 1; got {batch_size!r}")
    envelopes: list[Envelope] = []
    for index, call in enumerate(calls):
        envelopes.append(
            _envelope(task, index, call, options, like=envelopes[0] if envelopes else None)
        )
    results = [AsyncResult(envelope["id"]) for envelope in envelopes]
    alias = router.db_for_write(TaskResult)
    if connections[alias].in_atomic_block:
        transaction.on_commit(
            lambda: _publish(task, envelopes, results, batch_size=batch_size), using=alias
        )
    else:
        _publish(task, envelopes, results, batch_size=batch_size)
    return results


def _envelope(
    task: PublishedTask, index: int, call: Any, options: dict[str, Any], like: Envelope | None
) -> Envelope:
    """Call ``index``'s message; ``TypeError`` (or ``InvalidMessage``) naming it if it is bad.

    ``like``: the first call's message, built and validated; the others differ from it only in
    id and arguments, which ``message.ensure_json`` checks, so they are not validated again.
    """
    if isinstance(call, Arguments):
        args, kwargs = list(call.args), call.kwargs
    elif isinstance(call, tuple | list):
        args, kwargs = list(call), {}
    elif isinstance(call, dict):
        args, kwargs = [], call
    else:
        raise TypeError(
            f"call {index} of enqueue_many: expected a tuple or list of positional arguments, "
            f"a dict of keyword arguments or djworker.Arguments(...); got {_shown(call)}"
        )
    try:
        message.ensure_json(args, kwargs)
        if like is not None:
            return {**like, "id": str(uuid.uuid4()), "args": args, "kwargs": dict(kwargs)}
        return message.build(
            task_id=str(uuid.uuid4()), task_name=task.name, args=args, kwargs=kwargs, **options
        )
    except (TypeError, InvalidMessage) as exc:
        raise type(exc)(f"call {index} of enqueue_many ({_shown(call)}): {exc}") from None


def _shown(call: Any) -> str:
    shown = repr(call)
    return shown if len(shown) <= 200 else f"{shown[:200]}..."


def _publish(
    task: PublishedTask,
    envelopes: Sequence[Envelope],
    results: list[AsyncResult],
    *,
    batch_size: int,
) -> None:
    from djworker import broker, result_store

    publisher = broker.get_broker()
    for start in range(0, len(envelopes), batch_size):
        batch = envelopes[start : start + batch_size]
        try:
            if not task.ignore_result:
                ready_rows.insert_calls(
                    result_store.unsaved_row(batch[0]),
                    [(e["id"], *task.stored_arguments(e["args"], e["kwargs"])) for e in batch],
                )
            try:
                publisher.publish_many(batch)
            except PublishInterrupted as stopped:
                if not task.ignore_result:
                    ready_rows.delete([envelope["id"] for envelope in batch[stopped.published :]])
                raise
        except Exception as exc:
            published = start + (exc.published if isinstance(exc, PublishInterrupted) else 0)
            cause = exc.__cause__ if isinstance(exc, PublishInterrupted) else exc
            raise PublishInterrupted(
                f"enqueue_many of {task.name}: published {published} of {len(envelopes)} "
                f"calls, then failed: {cause!r}",
                published=published,
                results=results,
            ) from cause
    logger.debug("published task=%s calls=%s", task.name, len(envelopes))
