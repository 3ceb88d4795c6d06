"""The doorbell between workers and live-output consumers.

The database is the truth: a worker commits output or a status change, then rings the
execution's group; consumers answer by reading what is new from the database. A lost ring
costs latency, never data, because consumers also poll (LIVE_POLL_SECONDS).
"""

import logging

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

logger = logging.getLogger(__name__)


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
    transaction.on_commit(lambda: ring(execution_id))
