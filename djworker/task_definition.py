"""``@djworker.task``, the ``Task`` it makes, and the registry of task names.

The module is not named ``task`` so that ``djworker.task`` is the decorator.
Only tasks in this registry ever run in a worker; a message cannot name an arbitrary import path.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import (
    TYPE_CHECKING,
    Any,
    Generic,
    ParamSpec,
    TypedDict,
    TypeVar,
    Unpack,
    cast,
    overload,
)

from django.utils import timezone

from djworker import message, task_registry
from djworker.conf import DEFAULT_QUEUE
from djworker.exceptions import ConfigurationError, UnknownTask
from djworker.job import soft_limit_below_hard
from djworker.log_safety import get_logger
from djworker.message import Envelope
from djworker.option_values import parse_queues

if TYPE_CHECKING:
    from djworker.result import AsyncResult

P = ParamSpec("P")
R = TypeVar("R")

logger = get_logger(__name__)

#: task name -> Task; filled by the decorator when an app's ``tasks.py`` is imported. The same
#: dict as ``task_registry.tasks``, which the result store reads; only ``Task`` objects go in.
registry = cast("dict[str, Task[Any, Any]]", task_registry.tasks)
#: calls per batch of ``Task.enqueue_many``: one insert of rows and one broker round trip each
DEFAULT_BATCH_SIZE = 500
#: what a redacted argument is stored as (``@task(redact_args=True)``)
REDACTED = "[redacted]"


def get_task(name: str) -> Task[Any, Any]:
    try:
        return registry[name]
    except KeyError:
        raise UnknownTask(f"task {name!r} is not registered in this worker") from None


class CallOptions(TypedDict, total=False):
    """The options of one call, as ``apply_async`` and ``enqueue_many`` take them."""

    countdown: float | None
    eta: datetime | None
    expires: float | datetime | None
    queue: str | None
    priority: int | None
    time_limit: float | None
    soft_time_limit: float | None


class Task(Generic[P, R]):
    """A function that can also be run later by a worker.

    Calling the task runs the function inline; ``delay``/``apply_async`` publish a message and
    return an ``AsyncResult``.
    """

    def __init__(
        self,
        func: Callable[P, R],
        *,
        name: str | None = None,
        queue: str | None = None,
        priority: int = 0,
        max_retries: int | None = 3,
        retry_backoff: bool | float = False,
        retry_backoff_max: float = 600.0,
        retry_jitter: bool = True,
        default_retry_delay: float = 180.0,
        autoretry_for: tuple[type[BaseException], ...] = (),
        acks_late: bool = True,
        reject_on_worker_lost: bool = False,
        ignore_result: bool = False,
        time_limit: float | None = None,
        soft_time_limit: float | None = None,
        redact_args: bool = False,
        max_deliveries: int | None = None,
    ) -> None:
        self.func = func
        self.name = name or f"{func.__module__}.{func.__qualname__}"
        self.queue = parse_queues(queue, name=f"task {self.name!r} queue")[0] if queue else None
        self.priority = _check_priority(priority, where=f"task {self.name!r}")
        if max_retries is not None and (not isinstance(max_retries, int) or max_retries < 0):
            raise ConfigurationError(
                f"task {self.name!r}: max_retries expects an integer >= 0 or None; "
                f"got {max_retries!r}"
            )
        self.max_retries = max_retries
        self.retry_backoff = retry_backoff
        self.retry_backoff_max = retry_backoff_max
        self.retry_jitter = retry_jitter
        self.default_retry_delay = default_retry_delay
        if not isinstance(autoretry_for, tuple) or not all(
            isinstance(e, type) and issubclass(e, BaseException) for e in autoretry_for
        ):
            raise ConfigurationError(
                f"task {self.name!r}: autoretry_for expects a tuple of exception classes; "
                f"got {autoretry_for!r}"
            )
        self.autoretry_for = autoretry_for
        self.acks_late = acks_late
        self.reject_on_worker_lost = reject_on_worker_lost
        self.ignore_result = ignore_result
        if not isinstance(redact_args, bool):
            raise ConfigurationError(
                f"task {self.name!r}: redact_args expects True or False; got {redact_args!r}"
            )
        self.redact_args = redact_args
        self.time_limit = _check_seconds(time_limit, "time_limit", self.name)
        self.soft_time_limit = _check_seconds(soft_time_limit, "soft_time_limit", self.name)
        if not soft_limit_below_hard(soft_s=self.soft_time_limit, hard_s=self.time_limit):
            raise ConfigurationError(
                f"task {self.name!r}: soft_time_limit ({self.soft_time_limit}) must be below "
                f"time_limit ({self.time_limit})"
            )
        if max_deliveries is not None and (
            not isinstance(max_deliveries, int)
            or isinstance(max_deliveries, bool)
            or max_deliveries < 0
        ):
            raise ConfigurationError(
                f"task {self.name!r}: max_deliveries expects a whole number >= 0 (0 means no "
                f"cap) or None (the worker's --max-deliveries); got {max_deliveries!r}"
            )
        #: deliveries of one message that may start before it is failed; None: the worker's
        self.max_deliveries = max_deliveries
        self.__name__ = getattr(func, "__name__", self.name)
        self.__doc__ = func.__doc__
        self.__module__ = func.__module__
        self.__wrapped__ = func

    def __repr__(self) -> str:
        return f"<Task {self.name}>"

    def stored_arguments(
        self, args: list[Any], kwargs: dict[str, Any]
    ) -> tuple[list[Any], dict[str, Any]]:
        """The arguments as the result table keeps them.

        With ``redact_args`` each value is replaced by ``REDACTED``: the row still shows how many
        positional arguments there were and the keyword names, never a value. The message
        itself carries the real arguments, which the task needs.
        """
        if not self.redact_args:
            return args, kwargs
        return [REDACTED] * len(args), dict.fromkeys(kwargs, REDACTED)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.func(*args, **kwargs)

    def delay(self, *args: P.args, **kwargs: P.kwargs) -> AsyncResult:
        """Publish a run of this task with these arguments."""
        return self.apply_async(args, kwargs)

    def delay_on_commit(self, *args: P.args, **kwargs: P.kwargs) -> AsyncResult:
        """Publish once the surrounding transaction commits; never if it rolls back.

        The returned result's id is known at once; its row appears when the transaction commits.
        """
        from django.db import transaction

        from djworker.result import AsyncResult

        message.ensure_json(args, kwargs)  # fail at the call site, not at commit
        task_id = str(uuid.uuid4())
        transaction.on_commit(lambda: self.apply_async(args, kwargs, task_id=task_id))
        return AsyncResult(task_id)

    def apply_async(
        self,
        args: tuple[Any, ...] | list[Any] | None = None,
        kwargs: dict[str, Any] | None = None,
        *,
        task_id: str | None = None,
        **options: Unpack[CallOptions],
    ) -> AsyncResult:
        """Publish a run of this task; options override the task's own for this call."""
        from djworker import broker, result_store
        from djworker.result import AsyncResult

        args = list(args or ())
        kwargs = dict(kwargs or {})
        message.ensure_json(args, kwargs)
        now = timezone.now()
        envelope = message.build(
            task_id=task_id or str(uuid.uuid4()),
            task_name=self.name,
            args=args,
            kwargs=kwargs,
            **self.call_options(now=now, **options),
        )
        stored = False if self.ignore_result else result_store.record_enqueued(envelope)
        try:
            broker.get_broker().publish(envelope, validated=True)
        except Exception:
            if stored:
                result_store.forget(envelope["id"])
            raise
        logger.debug(
            "published task=%s id=%s queue=%s", self.name, envelope["id"], envelope["queue"]
        )
        return AsyncResult(envelope["id"])

    def enqueue_many(
        self,
        calls: Iterable[Any],
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        **options: Unpack[CallOptions],
    ) -> list[AsyncResult]:
        """Publish many runs of this task at once; one ``AsyncResult`` per call, in order.

        Each call is a tuple or list of positional arguments, a dict of keyword arguments, or
        ``djworker.Arguments(*args, **kwargs)``. The options (those of ``apply_async`` but
        ``task_id``) apply to every call. Every call is checked before anything is published;
        then each batch of ``batch_size`` calls is one insert of its result rows and one broker
        round trip. Inside ``transaction.atomic`` the calls are published when the transaction
        commits, never if it rolls back. See ``djworker.bulk_publish``.
        """
        from djworker import bulk_publish

        return bulk_publish.enqueue_many(
            self,
            calls,
            batch_size=batch_size,
            options=self.call_options(now=timezone.now(), **options),
        )

    def call_options(
        self,
        *,
        now: datetime,
        countdown: float | None = None,
        eta: datetime | None = None,
        expires: float | datetime | None = None,
        queue: str | None = None,
        priority: int | None = None,
        time_limit: float | None = None,
        soft_time_limit: float | None = None,
    ) -> dict[str, Any]:
        """A call's options, checked, as ``message.build`` takes them (with ``enqueued_at``)."""
        if countdown is not None and eta is not None:
            raise ValueError("give countdown or eta, not both")
        if countdown is not None:
            eta = _after(now, countdown, "countdown")
        if eta is not None and timezone.is_naive(eta):
            raise ValueError(f"eta must be timezone-aware; got {eta!r}")
        if isinstance(expires, int | float):
            expires = _after(now, expires, "expires")
        for option, moment in (("eta", eta), ("expires", expires)):
            if isinstance(moment, datetime) and (problem := message.out_of_range(moment)):
                raise ValueError(f"{option} {problem}; got {moment.isoformat()}")
        return {
            "queue": parse_queues(queue, name="queue")[0] if queue else self.queue or DEFAULT_QUEUE,
            "priority": self.priority if priority is None else _check_priority(priority, "call"),
            "eta": eta,
            "expires": expires,
            "time_limit": time_limit,
            "soft_time_limit": soft_time_limit,
            "enqueued_at": now,
        }

    # -- how a worker runs and records one run: execution.py calls these, so a task kind with
    # its own bookkeeping (django.tasks results, see backend_runner.py) overrides them only.

    def invoke(self, envelope: Envelope) -> Any:
        """Call the function with the message's arguments; return what it returned."""
        return self.func(*envelope["args"], **envelope["kwargs"])

    def record_started(
        self,
        envelope: Envelope,
        *,
        hostname: str,
        started_at: datetime,
        redelivered: bool = False,
        **counting: Any,
    ) -> int:
        """Mark the run RUNNING; how many runs this message started (see the delivery cap).

        ``redelivered``: the broker says this message was delivered before. ``counting`` goes
        to ``result_store.record_started`` as is.
        """
        from djworker import result_store

        return result_store.record_started(
            envelope, hostname=hostname, started_at=started_at, **counting
        )

    def record_success(self, envelope: Envelope, *, value: Any, **fields: Any) -> None:
        from djworker import result_store

        result_store.record_success(envelope, value=value, **fields)

    def record_failure(
        self, envelope: Envelope, *, error: BaseException | None, **fields: Any
    ) -> None:
        """Record a run that raised ``error`` (None: its slot was lost, see ``lost_outcome``)."""
        from djworker import result_store

        result_store.record_failure(envelope, **fields)


def _after(now: datetime, seconds: float, option: str) -> datetime:
    """``now`` plus ``seconds``, or a ``ValueError`` naming ``option`` if no time can hold it."""
    try:
        return now + timedelta(seconds=float(seconds))
    except (OverflowError, ValueError):
        raise ValueError(
            f"{option} expects a number of seconds that keeps the time within "
            f"{message.LATEST.date().isoformat()}; got {seconds!r}"
        ) from None


def _check_priority(priority: Any, where: str) -> int:
    if (
        not isinstance(priority, int)
        or isinstance(priority, bool)
        or not message.MIN_PRIORITY <= priority <= message.MAX_PRIORITY
    ):
        raise ConfigurationError(
            f"{where}: priority expects an integer from {message.MIN_PRIORITY} to "
            f"{message.MAX_PRIORITY} (higher runs first); got {priority!r}"
        )
    return priority


def _check_seconds(value: Any, option: str, task_name: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ConfigurationError(
            f"task {task_name!r}: {option} expects a positive number of seconds; got {value!r}"
        )
    return float(value)


@overload
def task(func: Callable[P, R], /) -> Task[P, R]: ...
@overload
def task(func: None = None, /, **options: Any) -> Callable[[Callable[P, R]], Task[P, R]]: ...
def task(
    func: Callable[P, R] | None = None, /, **options: Any
) -> Task[P, R] | Callable[[Callable[P, R]], Task[P, R]]:
    """Make a function a djworker task: ``@task`` or ``@task(queue="mail", max_retries=5)``."""

    def decorate(f: Callable[P, R]) -> Task[P, R]:
        made: Task[P, R] = Task(f, **options)
        existing = registry.get(made.name)
        if existing is not None and (
            existing.func.__module__,
            existing.func.__qualname__,
        ) != (f.__module__, f.__qualname__):
            raise ConfigurationError(
                f"task name {made.name!r} is already used by "
                f"{existing.func.__module__}.{existing.func.__qualname__}; pass name=... to one"
            )
        registry[made.name] = made
        return made

    if func is not None:
        if options:
            raise TypeError("use @task or @task(**options), not both")
        return decorate(func)
    return decorate
