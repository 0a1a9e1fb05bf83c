"""djworker's Redis transport: kombu's, with fewer round trips per message.

It keeps kombu's Redis data layout, so plain kombu publishers and consumers (and older
djworker workers) share queues with it: a queue is one list per priority step (``LPUSH`` to
publish, pop from the right), and a delivered, unacknowledged message is an entry of the
``unacked`` hash (tag -> ``[payload, exchange, routing_key]``) plus the ``unacked_index`` sorted
set (tag -> delivery time), which ``restore_visible`` scans to give back the messages of a dead
consumer after ``visibility_timeout``.

What changes is how a consumer talks to Redis:

* **Batches.** One Lua script (``TAKE_SCRIPT``) pops as many ready messages as the prefetch
  window has room for (at most ``TAKE_BATCH_MAX``), in priority order, and records each in
  ``unacked``/``unacked_index`` in the same atomic step: no crash can fall between the pop and
  the record. The consumer calls it before it blocks; ``BRPOP`` is only used to wait on an
  empty queue, and the message it returns is recorded by the same script call that takes the
  ones behind it. kombu spends a ``BRPOP`` and a ``MULTI``/``EXEC`` per message instead.
* **Batched acks.** An ack is written with the next script call (which deletes settled tags
  before it pops), or on its own once the oldest waited ``ACK_FLUSH_S``, when the consumer has
  nothing outstanding, when it is not consuming, and on close. A worker killed before the
  write leaves the message in ``unacked``: it is delivered again after ``visibility_timeout``,
  which at-least-once delivery allows anyway.
* **Renewed visibility.** While the channel holds a message, ``RedisLeases`` moves its
  ``unacked_index`` score to now every ``visibility_timeout / 3`` seconds, so a task longer
  than the timeout is not delivered again while it runs.
* **One client.** kombu builds a new redis-py client for every operation outside ``BRPOP``;
  building one costs about as much as a round trip. The channel keeps one per pool.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from time import monotonic, time
from typing import Any, NamedTuple

import redis
from kombu.transport import redis as kombu_redis
from kombu.transport import virtual
from kombu.utils.encoding import bytes_to_str
from kombu.utils.json import dumps, loads

from djworker.log_safety import get_logger
from djworker.transport import intake
from djworker.transport.redis_leases import RedisLeases

__all__ = ["Channel", "QoS", "Transport"]

logger = get_logger(__name__)

# The most messages one script call takes, whatever the prefetch window: bounds the time the
# script holds Redis and the messages one worker holds back from its peers.
TAKE_BATCH_MAX = 100
# Acks wait at most this long for a round trip to share (the ``django://`` broker's figure).
ACK_FLUSH_S = 0.05

# KEYS: unacked_index, unacked, then the lists to pop from, highest priority first.
# ARGV: now, how many to pop, a message already popped by BRPOP to record ('' if none),
#       then the delivery tags to settle (acked, or rejected without requeue).
# Returns: {first_recorded, key, item, recorded, key, item, recorded, ...}. A message that is
# not a kombu payload is returned unrecorded: the caller records it the way kombu does, or not.
TAKE_SCRIPT = """
local index, hash = KEYS[1], KEYS[2]
local now = ARGV[1]
for i = 4, #ARGV do
  redis.call('HDEL', hash, ARGV[i])
  redis.call('ZREM', index, ARGV[i])
end
local function record(item)
  local ok, message = pcall(cjson.decode, item)
  if not ok or type(message) ~= 'table' then return 0 end
  local properties = message['properties']
  if type(properties) ~= 'table' then return 0 end
  local tag, info = properties['delivery_tag'], properties['delivery_info']
  if type(tag) ~= 'string' or type(info) ~= 'table' then return 0 end
  local exchange, routing_key = info['exchange'], info['routing_key']
  if exchange == nil or routing_key == nil then return 0 end
  redis.call('ZADD', index, now, tag)
  redis.call('HSET', hash, tag,
    '[' .. item .. ',' .. cjson.encode(exchange) .. ',' .. cjson.encode(routing_key) .. ']')
  return 1
end
local out = {0}
if ARGV[3] ~= '' then out[1] = record(ARGV[3]) end
local limit, taken = tonumber(ARGV[2]), 0
for k = 3, #KEYS do
  while taken < limit do
    local item = redis.call('RPOP', KEYS[k])
    if not item then break end
    taken = taken + 1
    out[#out + 1] = KEYS[k]
    out[#out + 1] = item
    out[#out + 1] = record(item)
  end
  if taken >= limit then break end
end
return out
"""


class Taken(NamedTuple):
    """A message the take script popped: its queue, list key (prefixed), payload text."""

    queue: str
    key: str
    item: bytes
    recorded: bool  # written to ``unacked`` by the script


class QoS(kombu_redis.QoS):
    """kombu's Redis QoS, minus the writes the take script already did, with acks batched.

    ``append`` skips the ``unacked`` write for a message the script recorded; ``ack`` (and
    ``reject`` without requeue) hand the tag to ``Channel.settle`` instead of deleting it at
    once. Reject with requeue and restores stay kombu's.
    """

    channel: Channel

    def append(self, message: Any, delivery_tag: str) -> None:
        if self.channel.was_recorded(delivery_tag):
            virtual.QoS.append(self, message, delivery_tag)
        else:
            super().append(message, delivery_tag)
        self.channel.leases.hold(delivery_tag)

    def ack(self, delivery_tag: str) -> None:
        self.channel.leases.release(delivery_tag)
        self.channel.settle(delivery_tag)
        virtual.QoS.ack(self, delivery_tag)

    def reject(self, delivery_tag: str, requeue: bool = False) -> None:
        if requeue:
            super().reject(delivery_tag, requeue=True)
        else:
            self.ack(delivery_tag)

    def restore_unacked(self, client: Any = None) -> None:
        self.channel.leases.stop()
        # An acked tag still waiting for its write would otherwise be put back in its queue.
        self.channel.flush_acks()
        super().restore_unacked(client)

    def outstanding(self) -> int:
        """Messages delivered to this channel and not settled yet."""
        return len(self._delivered) - len(self._dirty)


class Channel(kombu_redis.Channel):
    """kombu's Redis channel that takes messages in batches and writes acks in batches."""

    QoS = QoS
    connection: Transport
    #: seconds the lock of the scan for a dead consumer's messages lives (kombu: 300). A scan
    #: restores at most ``unacked_restore_limit`` messages and takes milliseconds; the lock's
    #: life only matters when its holder is killed mid-scan, and then every worker's scans
    #: wait for it: a killed worker must not hold back everyone's redeliveries for 5 minutes.
    unacked_mutex_expire = 30

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._pool_client: redis.Redis | None = None
        self._script_client: redis.Redis | None = None
        self._take_script: Any = None
        self._recorded: set[str] = set()  # recorded by the script, not yet appended to QoS
        self._acks: list[str] = []  # settled, not written yet
        self._acks_since = 0.0
        # True once a take found fewer messages than it asked for: wait with BRPOP next.
        self._drained = False
        self._no_ack_queues: set[str] = set()
        super().__init__(*args, **kwargs)
        self.leases = RedisLeases(
            visibility_timeout_s=float(self.visibility_timeout),
            index_key=self._key(self.unacked_index_key),
            client=lambda: redis.Redis(connection_pool=self.pool),
            errors=(redis.RedisError, OSError),
        )

    # -- clients ------------------------------------------------------------------------------

    @contextmanager
    def conn_or_acquire(self, client: Any = None) -> Iterator[Any]:
        """kombu's, without building a redis-py client per call."""
        if client is not None:
            yield client
            return
        if self._pool_client is None:
            self._pool_client = self._create_client()
        yield self._pool_client

    def publish_many(self, queue: str, messages: Sequence[dict[str, Any]]) -> None:
        """``basic_publish`` of ``messages`` (from ``prepare_message``) to ``queue``, at once.

        All or none, in one round trip: one ``LPUSH`` of many values per priority list, inside
        ``MULTI`` when there are several, so ``BRPOP`` still takes them oldest first.
        """
        values_by_list: dict[str, list[str]] = {}
        for message in messages:
            self._inplace_augment_message(message, "", queue)  # base64 body, delivery tag
            priority = self._get_message_priority(message, reverse=False)
            values_by_list.setdefault(self._q_for_pri(queue, priority), []).append(dumps(message))
        if not values_by_list:
            return
        with self.conn_or_acquire() as client:
            if len(values_by_list) == 1:
                [(key, values)] = values_by_list.items()
                client.lpush(key, *values)
                return
            with client.pipeline(transaction=True) as pipe:
                for key, values in values_by_list.items():
                    pipe.lpush(key, *values)
                pipe.execute()

    def _scripts(self) -> tuple[redis.Redis, Any]:
        # A plain client: kombu's key-prefixing client would prefix only the first key of
        # EVALSHA, so keys are prefixed here (``_key``) for every command this client runs.
        if self._script_client is None:
            self._script_client = redis.Redis(connection_pool=self.pool)
            self._take_script = self._script_client.register_script(TAKE_SCRIPT)
        return self._script_client, self._take_script

    def _key(self, key: str) -> str:
        return f"{self.global_keyprefix}{key}"

    def _disconnect_pools(self) -> None:
        self._pool_client = self._script_client = self._take_script = None
        super()._disconnect_pools()

    # -- taking messages ----------------------------------------------------------------------

    def _room(self) -> int:
        """How many messages one take may pop: the prefetch window's room, one if unlimited."""
        room = self.qos.can_consume_max_estimate()
        if room is None:
            return 1  # no prefetch limit: take one at a time rather than the whole queue
        return min(room, TAKE_BATCH_MAX)

    def _batching(self) -> bool:
        # A no_ack consumer never acks, so a message the script recorded for it would come
        # back after visibility_timeout: such a channel takes messages the way kombu does.
        return (
            bool(self.ack_emulation)
            and not self._closing
            and not self.connection.on_loop
            and not self._no_ack_queues
        )

    def deliver_ready(self) -> bool:
        """Take and deliver ready messages without blocking; False if none was delivered."""
        if (
            not self._batching()
            or self._drained
            or self._in_poll  # a BRPOP is waiting already: its reply comes first
            or not self._consumers
            or not self.active_queues
        ):
            return False
        room = self._room()
        if room <= 0:
            return False
        queues = self._queue_cycle.consume(len(self.active_queues))
        _, taken = self._take(queues, room)
        self._drained = len(taken) < room
        if taken:
            self._queue_cycle.rotate(taken[0][0])
            self._deliver_taken(taken)
        return bool(taken)

    def _brpop_read(self, **options: Any) -> bool:
        """kombu's ``BRPOP`` reply handling; the message is recorded with the ones behind it."""
        if not self._batching():
            return bool(super()._brpop_read(**options))
        client = self.client
        try:
            try:
                reply = client.parse_response(client.connection, "BRPOP", **options)
            except self.connection_errors:
                client.connection.disconnect()  # the next poll reconnects
                raise
            if not reply:
                raise kombu_redis.Empty()
            key, item = reply
            queue = bytes_to_str(key).rsplit(self.sep, 1)[0]
            self._queue_cycle.rotate(queue)
        finally:
            self._in_poll = None  # type: ignore[assignment]  # kombu's own reset
            # kombu 5.7 sends a pending streaming re-auth here, as its own _brpop_read does;
            # older kombu versions have no such step.
            flush_reauth = getattr(self, "_flush_brpop_reauth", None)
            if flush_reauth is not None:
                flush_reauth()
        # No batch for a queue whose consumer was cancelled while this BRPOP was pending.
        room = self._room() - 1 if queue in self.active_queues else 0
        recorded, taken = self._take([queue] if room > 0 else [], room, first=item)
        self._drained = len(taken) < room
        self._deliver_taken([Taken(queue, self._key(bytes_to_str(key)), item, recorded), *taken])
        return True

    def _take(
        self, queues: list[str], limit: int, *, first: bytes | None = None
    ) -> tuple[bool, list[Taken]]:
        """One script call: settle pending acks, record ``first``, pop up to ``limit``.

        Returns whether ``first`` was recorded, and the messages popped, in delivery order.
        """
        client, script = self._scripts()
        lists = [
            self._key(self._q_for_pri(queue, pri))
            for pri in self.priority_steps
            for queue in queues
        ]
        acks, acks_since = self._acks, self._acks_since
        self._acks = []
        try:
            reply = script(
                keys=[self._key(self.unacked_index_key), self._key(self.unacked_key), *lists],
                args=[repr(time()), max(limit, 0), first or b"", *acks],
                client=client,
            )
        except BaseException:
            if acks:  # written or not, writing them again is harmless
                self._acks[:0] = acks
                self._acks_since = acks_since
            raise
        prefix = len(self.global_keyprefix)
        taken = []
        for i in range(1, len(reply), 3):
            key = bytes_to_str(reply[i])
            queue = key[prefix:].rsplit(self.sep, 1)[0]
            taken.append(Taken(queue, key, reply[i + 1], bool(reply[i + 2])))
        return bool(reply[0]), taken

    def _deliver_taken(self, taken: list[Taken]) -> None:
        for position, message in enumerate(taken):
            if message.queue not in self.connection._callbacks:
                # Its consumer was cancelled by a callback of this very batch: put the rest
                # back in order rather than have kombu reject each to the end of the queue.
                self._give_back(taken[position:])
                return
            payload, problem = intake.parse(message.item, tagged=True)
            if payload is None:
                # Popped already, as kombu would have; kombu could never deliver it anyway.
                logger.error(
                    "removed a message of queue=%s: %s; payload=%.200r",
                    message.queue,
                    problem,
                    message.item,
                )
                if message.recorded:  # so the script found its delivery tag
                    self.settle(loads(message.item)["properties"]["delivery_tag"])
                continue
            tag = payload["properties"]["delivery_tag"] if message.recorded else None
            if tag is not None:
                self._recorded.add(tag)
            try:
                self.connection._deliver(payload, message.queue)
            except BaseException:
                self._give_back(taken[position + 1 :])
                raise
            finally:
                if tag is not None:
                    self._recorded.discard(tag)

    def was_recorded(self, delivery_tag: str) -> bool:
        """Whether the take script wrote ``delivery_tag`` to ``unacked`` (asked once, by QoS)."""
        if delivery_tag in self._recorded:
            self._recorded.discard(delivery_tag)
            return True
        return False

    def _give_back(self, taken: list[Taken]) -> None:
        """Put back, in one transaction, messages taken but never handed to kombu."""
        if not taken:
            return
        client, _ = self._scripts()
        pipe = client.pipeline()
        # Last first: each goes back to the popping end, so the order is kept.
        for message in reversed(taken):
            if message.recorded:
                tag = loads(bytes_to_str(message.item))["properties"]["delivery_tag"]
                pipe.hdel(self._key(self.unacked_key), tag)
                pipe.zrem(self._key(self.unacked_index_key), tag)
            pipe.rpush(message.key, message.item)
        pipe.execute()

    # -- acks ---------------------------------------------------------------------------------

    def settle(self, delivery_tag: str) -> None:
        """Delete ``delivery_tag`` from ``unacked`` with the next round trip (or now, if due)."""
        if not self._acks:
            self._acks_since = monotonic()
        self._acks.append(delivery_tag)
        if (
            not self._batching()
            or not self._consumers  # nothing will drain soon: no round trip to share
            or monotonic() - self._acks_since >= ACK_FLUSH_S
        ):
            self.flush_acks()

    def flush_acks(self) -> None:
        """Write every pending ack now, in one round trip."""
        if self._acks:
            self._take([], 0)

    def before_wait(self) -> None:
        """About to block: write acks that are due, or all when nothing else is outstanding."""
        if self._acks and (
            monotonic() - self._acks_since >= ACK_FLUSH_S or not self.qos.outstanding()
        ):
            self.flush_acks()

    def basic_consume(self, queue: str, no_ack: bool, *args: Any, **kwargs: Any) -> Any:
        self._drained = False
        if no_ack:
            self._no_ack_queues.add(queue)
        return super().basic_consume(queue, no_ack, *args, **kwargs)

    def basic_cancel(self, consumer_tag: str) -> Any:
        queue = self._tag_to_queue.get(consumer_tag)
        result = super().basic_cancel(consumer_tag)
        if queue is not None and queue not in self._tag_to_queue.values():
            self._no_ack_queues.discard(queue)
        if not self._consumers:
            self._flush_acks_or_warn()
        return result

    def _flush_acks_or_warn(self) -> None:
        try:
            self.flush_acks()
        except self.connection_errors:
            logger.warning(
                "could not write acks=%d; their messages will be delivered again after "
                "visibility_timeout_s=%s",
                len(self._acks),
                self.visibility_timeout,
                exc_info=True,
            )
            self._acks = []

    def close(self) -> None:
        """Write pending acks before kombu puts every unacknowledged message back."""
        self.leases.stop()
        if not self.closed and self.connection is not None:
            self._flush_acks_or_warn()
        super().close()


class Transport(kombu_redis.Transport):
    """kombu's Redis transport with ``Channel``'s batches; same URLs and options."""

    Channel = Channel
    on_loop = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: set when an event loop drives the connection; then nothing calls ``drain_events``
        #: to write batched acks, so channels write each at once, like kombu.
        self.on_loop = False

    def register_with_event_loop(self, connection: Any, loop: Any) -> None:
        self.on_loop = True
        super().register_with_event_loop(connection, loop)

    def drain_events(  # type: ignore[override]  # kombu declares **kwargs, passes timeout
        self, connection: Any, timeout: float | None = None
    ) -> None:
        """Deliver ready messages in a batch if there are any; else wait with ``BRPOP``."""
        for channel in list(self.channels):
            if channel.deliver_ready():
                return
        for channel in list(self.channels):
            channel.before_wait()
        super().drain_events(connection, timeout=timeout)
