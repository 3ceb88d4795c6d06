"""The doorbell between workers and live-output consumers.

The database is the truth: a worker commits output or a status change, then rings the
execution's group; consumers answer by reading what is new from the database. A lost ring
costs latency, never data, because consumers also poll (LIVE_POLL_SECONDS).
"""

from __future__ import annotations

import logging
import threading

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

logger = logging.getLogger(__name__)

_local = threading.local()


def group_name(execution_id: int) -> str:
    return f"execution-{execution_id}"


def ring(execution_id: int) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(group_name(execution_id), {"type": "execution.changed"})
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

    def _run(self) -> None:
        while True:
            with self._asked:
                while not (self._wanted or self._closing):
                    self._asked.wait()
                if not self._wanted:
                    return
                self._wanted = False
            ring(self.execution_id)
