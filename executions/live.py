"""The doorbell between workers and live-output consumers.

The database is the truth: a worker commits output or a status change, then rings the
execution's group; each web process's feed of the execution (executions/fanout.py) answers
by reading what is new from the database, once for all its viewers. A lost ring costs
latency, never data, because feeds also poll (LIVE_POLL_SECONDS).
"""

from __future__ import annotations

import asyncio
import logging
import threading

from asgiref.sync import async_to_sync
from channels.layers import BaseChannelLayer, InMemoryChannelLayer, get_channel_layer
from django.db import transaction

logger = logging.getLogger(__name__)

_local = threading.local()
CHANGED = {"type": "execution.changed"}


def group_name(execution_id: int) -> str:
    return f"execution-{execution_id}"


def ring(execution_id: int) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(group_name(execution_id), CHANGED)
    except Exception:  # a broken layer must not fail a run: consumers poll as well
        logger.warning("could not ring execution %s", execution_id, exc_info=True)


def ring_after_commit(execution_id: int) -> None:
    ringer: Ringer | None = getattr(_local, "ringer", None)
    if ringer is not None and ringer.execution_id == execution_id:
        transaction.on_commit(ringer.ring)
    else:
        transaction.on_commit(lambda: ring(execution_id))


class Ringer:
    """Rings one execution's group from a thread of its own, for the thread that enters it.

    A ring costs milliseconds (a round trip to Redis, a new event loop), and the output
    writer commits a state change or a batch of output many times a second: ringing on the
    writer's thread made a fan-out wait on the channel layer. Inside `with Ringer(...)`, that
    thread's rings for the execution only ask this thread to ring, and those asked for while
    a ring is under way become one ring after it: each ring makes a consumer read everything
    new, so one ring after the last commit tells it all.
    """

    def __init__(self, execution_id: int) -> None:
        self.execution_id = execution_id
        self._asked = threading.Condition()
        self._wanted = False
        self._closing = False
        self._thread = threading.Thread(
            target=self._run, name=f"ringer-{execution_id}", daemon=True
        )

    def __enter__(self) -> Ringer:
        self._thread.start()
        _local.ringer = self
        return self

    def __exit__(self, *exc: object) -> None:
        # Not joined: a hung channel layer must not hold up the end of the run either. The
        # thread still rings what was asked for, then ends.
        _local.ringer = None
        with self._asked:
            self._closing = True
            self._asked.notify()

    def ring(self) -> None:
        with self._asked:
            self._wanted = True
            self._asked.notify()

    def _next(self) -> bool:
        """Wait until a ring is asked for (True) or the block was left with none (False)."""
        with self._asked:
            while not (self._wanted or self._closing):
                self._asked.wait()
            wanted, self._wanted = self._wanted, False
            return wanted

    def _run(self) -> None:
        layer = get_channel_layer()
        if layer is None or isinstance(layer, InMemoryChannelLayer):
            # The in-memory layer's queues belong to its consumers' event loop, which
            # async_to_sync reaches; there is no connection to keep.
            while self._next():
                ring(self.execution_id)
        else:
            # One event loop for all the rings, so one connection: async_to_sync would start
            # a loop and connect to Redis again for every ring, ten times the cost.
            asyncio.run(self._ring_on_one_loop(layer))

    async def _ring_on_one_loop(self, layer: BaseChannelLayer) -> None:
        # Blocking this loop while waiting is fine: nothing else runs on it.
        while self._next():
            try:
                await layer.group_send(group_name(self.execution_id), CHANGED)
            except Exception:  # a broken layer must not fail a run: consumers poll as well
                logger.warning("could not ring execution %s", self.execution_id, exc_info=True)
