"""Live output of one execution over a WebSocket at /ws/executions/<id>/?after=<seq>.

On connect the consumer replays what is stored after `after`, then follows: it subscribes to
the execution's feed (executions/fanout.py), the one reader in this process that reads what
is new from the database whenever the doorbell rings (or the poll interval passes), status
changes included, and hands it to every viewer. Reading the database, not trusting messages,
is what makes the stream gap-free across reconnects, lost rings and worker restarts; a viewer
that falls behind the feed reads from the database by seq until it has caught up.

Messages sent, in order:
  {"type": "output", "chunks": [{"seq", "host_run", "stream", "text"[, "b64"]}, ...]}
  {"type": "status", "execution": {...}, "host_runs": [{...}, ...]}
  {"type": "end"}   once the execution has finished and every chunk was sent
"b64" carries the exact bytes when a chunk is not valid UTF-8 ("text" then shows it with
replacement characters).

A socket that may not stream is accepted and then closed with a code that says why: 4401
signed out (or an API token no longer valid), 4404 no such execution (or not yours to see),
4400 a malformed `after`; 4500 asks the client to reconnect. Access is checked again every
LIVE_ACCESS_RECHECK_SECONDS. The channel layer is only a doorbell: while it fails (Redis
down) the feed reads the database every LIVE_FALLBACK_POLL_SECONDS and joins its group again
once the layer is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
from importlib import import_module
from typing import Any
from urllib.parse import parse_qs

from channels.auth import get_user
from channels.db import database_sync_to_async
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from channels.utils import await_many_dispatch
from django.conf import settings

from accounts import policy
from executions import fanout
from executions.fanout import Batch, FeedFailed, Subscription
from executions.messages import MAX_MESSAGE_BYTES, chunk_message, output_messages
from executions.models import Execution
from tsubame.websocket import bearer_secret, bearer_user

logger = logging.getLogger(__name__)

# Where the API and the tests have always found them.
__all__ = ["MAX_MESSAGE_BYTES", "ExecutionConsumer", "chunk_message"]

CLOSE_UNAUTHENTICATED = 4401
CLOSE_NOT_FOUND = 4404
CLOSE_BAD_REQUEST = 4400
# daphne (autobahn) refuses 1011 from a server: codes 4000-4999 are ours to define.
CLOSE_SERVER_ERROR = 4500


class ExecutionConsumer(AsyncJsonWebsocketConsumer):
    @classmethod
    async def encode_json(cls, content: Any) -> str:
        # Not ASCII-escaped: non-ASCII output would otherwise take 6 bytes a character.
        return json.dumps(content, ensure_ascii=False)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        """Serve one socket, with the channel layer kept out of the dispatch loop.

        channels' base class reads the layer in the same loop as the client's frames, so one
        layer error (Redis down) would end the connection. Here the layer only rings the
        doorbell, for the execution's feed (executions/fanout.py), and the stream works
        without it.
        """
        self.scope = scope
        self.base_send = send
        with contextlib.suppress(StopConsumer):
            await await_many_dispatch([receive], self.dispatch)

    async def connect(self) -> None:
        self.execution_id = int(self.scope["url_route"]["kwargs"]["execution_id"])
        self.tasks: list[asyncio.Task[None]] = []
        # Accept, then refuse: a socket closed before it is accepted gets HTTP 403 from
        # daphne, and the client could not tell "signed out" from "not found".
        await self.accept()
        refusal = await self.refusal()
        if refusal is None:
            query = parse_qs(self.scope.get("query_string", b"").decode())
            try:
                self.last_seq = int(query.get("after", ["-1"])[0])
            except ValueError:
                refusal = CLOSE_BAD_REQUEST
        if refusal is not None:
            await self.close(code=refusal)
            return
        self.sent_status: dict[str, Any] | None = None
        pump = asyncio.create_task(self.pump())
        self.tasks += [pump, asyncio.create_task(self.guard(pump))]

    async def disconnect(self, code: int) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        """Clients only listen; anything they send (JSON or not) is ignored."""

    async def refusal(self) -> int | None:
        """Why this socket may not stream, as its close code; None while it may.

        Asked on connect and again every LIVE_ACCESS_RECHECK_SECONDS, from the session or
        the API token (tsubame.websocket.BearerTokenMiddleware) as it stands now: a logout,
        a password change, a revoked or expired token or a deactivation signs the socket
        out, and a removed membership makes the execution vanish.
        """
        if bearer_secret(self.scope) is not None:
            user = await bearer_user(self.scope)
        else:
            session = import_module(settings.SESSION_ENGINE).SessionStore(
                self.scope["session"].session_key
            )
            user = await get_user({"session": session})
        if user is None or not user.is_authenticated:
            return CLOSE_UNAUTHENTICATED
        if not await database_sync_to_async(self._visible)(user):
            # Not found and not allowed look the same: existence is not leaked.
            return CLOSE_NOT_FOUND
        return None

    def _visible(self, user: Any) -> bool:
        return policy.visible(Execution.objects.filter(pk=self.execution_id), user).exists()

    async def pump(self) -> None:
        try:
            await self._follow()
        except asyncio.CancelledError:
            raise
        except FeedFailed:
            # The feed logged why, once for all its viewers; closing makes them reconnect.
            await self.close(code=CLOSE_SERVER_ERROR)
        except Exception:
            # Never leave a client on a silent socket: closing makes it reconnect with `after`.
            logger.exception("live output of execution %s failed", self.execution_id)
            await self.close(code=CLOSE_SERVER_ERROR)

    async def _follow(self) -> None:
        # Once, and again each time this socket fell behind the feed and was dropped from it.
        while True:
            async with fanout.subscribe(self.execution_id) as subscription:
                if await self._follow_feed(subscription):
                    return

    async def _follow_feed(self, subscription: Subscription) -> bool:
        """Catch up to where the feed was on joining, then send its batches as they come;
        True once the end was sent, False when dropped from the feed."""
        while self.last_seq < subscription.position:
            chunks, _ = await database_sync_to_async(fanout.read_chunks)(
                self.execution_id, self.last_seq
            )
            if not chunks:
                break  # removed meanwhile (retention): there is nothing left to send
            await self._send(Batch(chunks, None, ended=False))
        if await self._send(Batch([], subscription.status, subscription.ended)):
            return True
        while (batch := await subscription.next()) is not None:
            if await self._send(batch):
                return True
        return False

    async def _send(self, batch: Batch) -> bool:
        """Send what the socket has not had of `batch`; True once that was the end."""
        if batch.chunks and batch.chunks[0]["seq"] > self.last_seq:
            messages = batch.messages
        else:  # read ahead of the feed while catching up, or resumed ahead of it (`after`)
            messages = output_messages([c for c in batch.chunks if c["seq"] > self.last_seq])
        for message in messages:
            await self.send(text_data=message)
        if batch.chunks:
            self.last_seq = max(self.last_seq, batch.chunks[-1]["seq"])
        if batch.status is not None and batch.status != self.sent_status:
            await self.send_json(batch.status)
            self.sent_status = batch.status
        if batch.ended:
            await self.send_json({"type": "end"})
        return batch.ended

    async def guard(self, pump: asyncio.Task[None]) -> None:
        """Close the socket once it may no longer stream, asking every
        LIVE_ACCESS_RECHECK_SECONDS while the stream goes on: beside the output, so that a
        slow answer holds none of it up."""
        # The first time at a random point of the interval: sockets opened together (a crowd
        # following one run) would otherwise all ask the database at the same moment.
        wait = settings.LIVE_ACCESS_RECHECK_SECONDS * random.random()
        while not (await asyncio.wait({pump}, timeout=wait))[0]:
            try:
                refusal = await self.refusal()
            except Exception:
                logger.exception("checking access to execution %s failed", self.execution_id)
                refusal = CLOSE_SERVER_ERROR
            if refusal is not None:
                pump.cancel()
                await asyncio.gather(pump, return_exceptions=True)
                await self.close(code=refusal)
                return
            wait = settings.LIVE_ACCESS_RECHECK_SECONDS
