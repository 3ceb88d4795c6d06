"""One reader of live output per execution per process, shared by all its viewers.

While at least one consumer follows an execution, one Feed reads what is new (chunks and the
status) from the database whenever the doorbell rings or the poll interval passes, and hands
each batch to every Subscription in memory: the database sees the same queries for one viewer
as for two hundred. A subscription holds at most LIVE_VIEWER_BUFFER_BYTES of batches that its
consumer has not taken yet (besides the one it is sending); one that falls further behind (a
slow or stalled client) is dropped, and its consumer catches up from the database by seq, as
on connect, at the pace its client reads, then subscribes again. So a stalled client costs a
bounded amount of memory, never a gap or a duplicate.

The feed follows what executions/live.py says: the database is the truth and the channel
layer only a doorbell. While the layer fails (Redis down) the feed polls every
LIVE_FALLBACK_POLL_SECONDS and joins its group again once the layer is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, TypeVar

from asgiref.sync import sync_to_async
from channels.layers import BaseChannelLayer, get_channel_layer
from django.conf import settings
from django.db import connections

from executions import live, logs
from executions.messages import chunk_message, output_messages, status_message
from executions.models import Execution, LogChunk

logger = logging.getLogger(__name__)
T = TypeVar("T")

# Feeds read on threads of their own: channels runs every other database call of the web
# process on one thread, where a feed's read would wait behind each viewer's access checks
# (hundreds at once with as many viewers) and every viewer would wait with it.
_readers = ThreadPoolExecutor(max_workers=4, thread_name_prefix="live-feed")


def on_reader_thread(func: Callable[..., T]) -> Callable[..., Awaitable[T]]:
    def read(*args: Any) -> T:
        try:
            return func(*args)
        finally:
            # Here, in the context the read ran in: database_sync_to_async's own clean-up
            # runs outside it on such threads, and the connection (a pooled one on
            # PostgreSQL) would stay taken.
            connections.close_all()

    return sync_to_async(read, thread_sensitive=False, executor=_readers)


def read_status(execution_id: int) -> dict[str, Any]:
    return status_message(Execution.objects.prefetch_related("host_runs").get(pk=execution_id))


def read_chunks(execution_id: int, after: int) -> tuple[list[dict[str, Any]], bool]:
    """The next page of chunks after `after`, and whether more may be waiting."""
    chunks, more = logs.read_page(execution_id, after)
    return [chunk_message(chunk) for chunk in chunks], more


def read_start(execution_id: int) -> tuple[dict[str, Any], int]:
    """The status and the last seq stored now: where a new feed starts."""
    # Status first: once a finished status is read, every chunk is already committed.
    status = read_status(execution_id)
    last = (
        LogChunk.objects.filter(execution_id=execution_id)
        .order_by("-seq")
        .values_list("seq", flat=True)
        .first()
    )
    return status, -1 if last is None else last


def read_new(execution_id: int, after: int) -> tuple[dict[str, Any], list[dict[str, Any]], bool]:
    """The current status, the next chunks after `after`, and whether more may be waiting."""
    # Status first, chunks second: once a finished status is read, every chunk of the
    # execution is already committed, so the chunks read next are the last ones.
    status = read_status(execution_id)
    return status, *read_chunks(execution_id, after)


@dataclass(eq=False)
class Batch:
    """What one read of the feed found: chunks in seq order, the status if it changed, and
    whether this is the end (finished, and every chunk read)."""

    chunks: list[dict[str, Any]]
    status: dict[str, Any] | None
    ended: bool

    @cached_property
    def messages(self) -> list[str]:
        # Encoded once, for every subscriber that sends it whole.
        return output_messages(self.chunks)

    @cached_property
    def size(self) -> int:
        """Roughly what holding this batch costs: its text and base64, per chunk."""
        return sum(len(c["text"]) + len(c.get("b64", "")) + 100 for c in self.chunks) + 1000


class FeedFailed(Exception):
    """The feed could not read the execution (deleted, or the database failed)."""


@dataclass(eq=False)
class Subscription:
    """One consumer's place in a feed.

    Everything after `position` (the feed's last seq when it joined) arrives in its batches;
    what lies between the consumer's own seq and `position` it reads from the database
    itself. `status` is the status as of `position`, `ended` whether the feed had ended then.
    """

    feed: Feed
    position: int
    status: dict[str, Any]
    ended: bool
    dropped: bool = False
    pending: deque[Batch] = field(default_factory=deque)
    pending_bytes: int = 0
    ready: asyncio.Event = field(default_factory=asyncio.Event)

    def offer(self, batch: Batch) -> None:
        # A batch always fits in an empty buffer, so one that is larger than the bound does
        # not drop everyone who keeps up.
        if self.pending and self.pending_bytes + batch.size > settings.LIVE_VIEWER_BUFFER_BYTES:
            self.drop()
            return
        self.pending.append(batch)
        self.pending_bytes += batch.size
        self.ready.set()

    def drop(self) -> None:
        """Leave the feed and forget what was buffered: the consumer reads it from the
        database instead."""
        self.dropped = True
        self.pending.clear()
        self.pending_bytes = 0
        self.feed.subscriptions.discard(self)
        self.ready.set()

    async def next(self) -> Batch | None:
        """The next batch, once there is one; None once dropped."""
        while not (self.pending or self.dropped or self.feed.failed):
            self.ready.clear()
            await self.ready.wait()
        if self.feed.failed is not None:
            raise FeedFailed from self.feed.failed
        if not self.pending:
            return None
        batch = self.pending.popleft()
        self.pending_bytes -= batch.size
        return batch


class Feed:
    """The one reader of an execution's live output in this process."""

    def __init__(self, execution_id: int) -> None:
        self.execution_id = execution_id
        # Consumers inside subscribe(), joined or still waiting for the feed to start: the
        # feed stops when the last of them leaves.
        self.members = 0
        self.subscriptions: set[Subscription] = set()
        self.started = asyncio.Event()
        self.doorbell = asyncio.Event()
        self.failed: BaseException | None = None
        self.last_seq = -1
        self.status: dict[str, Any] = {}
        self.ended = False
        # Whether rings arrive: None until the first try to join the execution's group.
        self.layer_works: bool | None = None
        self.task = asyncio.create_task(self._run())

    def subscribe(self) -> Subscription:
        subscription = Subscription(self, self.last_seq, self.status, self.ended)
        self.subscriptions.add(subscription)
        return subscription

    def _publish(self, batch: Batch) -> None:
        for subscription in list(self.subscriptions):
            subscription.offer(batch)

    async def _run(self) -> None:
        listener: asyncio.Task[None] | None = None
        try:
            self.status, self.last_seq = await on_reader_thread(read_start)(self.execution_id)
            self.ended = self.status["execution"]["finished"]
            self.started.set()
            layer = get_channel_layer()
            if layer is not None and not self.ended:
                listener = asyncio.create_task(self._listen(layer))
            while not self.ended:
                await self._read()
        except asyncio.CancelledError:
            raise
        except Exception as error:
            logger.exception("live output of execution %s failed", self.execution_id)
            self.failed = error
            self.started.set()
            for subscription in self.subscriptions:
                subscription.ready.set()
        finally:
            if listener is not None:
                listener.cancel()
                await asyncio.gather(listener, return_exceptions=True)

    async def _read(self) -> None:
        self.doorbell.clear()
        status, chunks, more = await on_reader_thread(read_new)(self.execution_id, self.last_seq)
        self.ended = status["execution"]["finished"] and not more
        changed = status if status != self.status else None
        if chunks or changed or self.ended:
            if chunks:
                self.last_seq = chunks[-1]["seq"]
            self.status = status
            self._publish(Batch(chunks, changed, self.ended))
        if more or self.ended:
            return  # more is stored: keep reading before waiting
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.doorbell.wait(), self._poll_seconds())

    def _poll_seconds(self) -> float:
        """How long to wait for a ring before reading the database anyway."""
        if self.layer_works:
            return settings.LIVE_POLL_SECONDS
        return min(settings.LIVE_POLL_SECONDS, settings.LIVE_FALLBACK_POLL_SECONDS)

    async def _listen(self, layer: BaseChannelLayer) -> None:
        """Ring the doorbell for every message of the channel layer while the feed runs.

        The layer may fail at any time (Redis down): the feed then reads the database every
        LIVE_FALLBACK_POLL_SECONDS, and this loop tries to join again as often. The group is
        also joined again every LIVE_POLL_SECONDS, because a restarted Redis has forgotten it
        without an error reaching every listener (channels-redis has one reader per process).
        """
        loop = asyncio.get_running_loop()
        group = live.group_name(self.execution_id)
        channel = await layer.new_channel()
        message: asyncio.Future[Any] | None = None
        join_at = loop.time()
        try:
            while True:
                try:
                    if loop.time() >= join_at:
                        await layer.group_add(group, channel)
                        join_at = loop.time() + settings.LIVE_POLL_SECONDS
                        self._layer_state(works=True)
                    message = message or asyncio.ensure_future(layer.receive(channel))
                    done, _ = await asyncio.wait({message}, timeout=join_at - loop.time())
                    if done:
                        received, message = message, None
                        received.result()  # raises what the layer raised
                        self.doorbell.set()
                except Exception:
                    if message is not None and message.done():
                        message = None
                    join_at = loop.time()
                    self._layer_state(works=False)
                    await asyncio.sleep(settings.LIVE_FALLBACK_POLL_SECONDS)
        finally:
            if message is not None:
                message.cancel()
            with contextlib.suppress(Exception):
                await layer.group_discard(group, channel)

    def _layer_state(self, *, works: bool) -> None:
        if works == self.layer_works:
            return
        if works and self.layer_works is False:
            logger.info("live output of execution %s: the channel layer is back", self.execution_id)
        elif not works:
            logger.warning(
                "live output of execution %s polls the database: the channel layer failed",
                self.execution_id,
                exc_info=True,
            )
        self.layer_works = works
        # Either way the feed reads now and waits for the new interval: a ring may have been
        # lost, and a wait meant for a working doorbell may be far too long now.
        self.doorbell.set()


# The feeds of each event loop (one in a web server process; tests may run several).
_feeds: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[int, Feed]] = (
    weakref.WeakKeyDictionary()
)


def feeds() -> dict[int, Feed]:
    """This event loop's feeds by execution id."""
    return _feeds.setdefault(asyncio.get_running_loop(), {})


@contextlib.asynccontextmanager
async def subscribe(execution_id: int) -> AsyncIterator[Subscription]:
    """A place in the execution's feed, started for the first subscriber and stopped after
    the last one leaves."""
    running = feeds()
    feed = running.get(execution_id)
    if feed is None or feed.failed is not None:
        feed = running[execution_id] = Feed(execution_id)
    feed.members += 1
    subscription: Subscription | None = None
    try:
        await feed.started.wait()
        if feed.failed is not None:
            raise FeedFailed from feed.failed
        subscription = feed.subscribe()
        yield subscription
    finally:
        if subscription is not None:
            feed.subscriptions.discard(subscription)
        feed.members -= 1
        if not feed.members:
            if running.get(execution_id) is feed:
                del running[execution_id]
            feed.task.cancel()
            await asyncio.gather(feed.task, return_exceptions=True)
