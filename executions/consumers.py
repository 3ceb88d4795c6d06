"""Live output of one execution over a WebSocket at /ws/executions/<id>/?after=<seq>.

On connect the consumer replays what is stored after `after`, then follows: whenever the
doorbell rings (or the poll interval passes) it reads what is new from the database and
sends it, status changes included. Reading the database, not trusting messages, is what
makes the stream gap-free across reconnects, lost rings and worker restarts.

Messages sent, in order:
  {"type": "output", "chunks": [{"seq", "host_run", "stream", "text"[, "b64"]}, ...]}
  {"type": "status", "execution": {...}, "host_runs": [{...}, ...]}
  {"type": "end"}   once the execution has finished and every chunk was sent
"b64" carries the exact bytes when a chunk is not valid UTF-8 ("text" then shows it with
replacement characters).

A socket that may not stream is accepted and then closed with a code that says why: 4401
signed out, 4404 no such execution (or not yours to see), 4400 a malformed `after`; 4500
asks the client to reconnect. Access is checked again every LIVE_ACCESS_RECHECK_SECONDS.
The channel layer is only a doorbell: while it fails (Redis down) the consumer reads the
database every LIVE_FALLBACK_POLL_SECONDS and joins its group again once the layer is back.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
from importlib import import_module
from typing import Any
from urllib.parse import parse_qs

from channels.auth import get_user
from channels.db import database_sync_to_async
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from channels.layers import BaseChannelLayer, get_channel_layer
from channels.utils import await_many_dispatch
from django.conf import settings

from accounts import policy
from executions import live, logs
from executions.models import Execution, LogChunk

logger = logging.getLogger(__name__)

CLOSE_UNAUTHENTICATED = 4401
CLOSE_NOT_FOUND = 4404
CLOSE_BAD_REQUEST = 4400
# daphne (autobahn) refuses 1011 from a server: codes 4000-4999 are ours to define.
CLOSE_SERVER_ERROR = 4500
# daphne drops a connection whose outgoing message exceeds 1 MiB: stay well under it.
MAX_MESSAGE_BYTES = 512 * 1024


def chunk_message(chunk: LogChunk) -> dict[str, Any]:
    data = bytes(chunk.data)
    message: dict[str, Any] = {
        "seq": chunk.seq,
        "host_run": chunk.host_run_id,
        "stream": LogChunk.Stream(chunk.stream).label,
    }
    try:
        message["text"] = data.decode()
    except UnicodeDecodeError:
        message["text"] = data.decode(errors="replace")
        message["b64"] = base64.b64encode(data).decode()
    return message


def status_message(execution: Execution) -> dict[str, Any]:
    def when(value: Any) -> str | None:
        return value.isoformat() if value else None

    return {
        "type": "status",
        "execution": {
            "id": execution.pk,
            "status": execution.status,
            "summary": execution.summary,
            "started_at": when(execution.started_at),
            "finished_at": when(execution.finished_at),
            "finished": execution.is_finished,
        },
        "host_runs": [
            {
                "id": run.pk,
                "server": run.server_name,
                "status": run.status,
                "exit_code": run.exit_code,
                "error": run.error,
                "started_at": when(run.started_at),
                "finished_at": when(run.finished_at),
                "duration": run.duration,
            }
            for run in execution.host_runs.all()
        ],
    }


def output_messages(chunks: list[dict[str, Any]]) -> list[str]:
    """The chunks as `output` messages of at most MAX_MESSAGE_BYTES each once encoded.

    A chunk's encoded size can be several times its byte size (control characters, base64
    next to replacement characters), so the budget is on the encoded text; OUTPUT_CHUNK_BYTES
    is capped so that a single chunk always fits.
    """
    messages: list[str] = []
    batch: list[str] = []
    size = 0
    for chunk in chunks:
        encoded = json.dumps(chunk, ensure_ascii=False)
        if batch and size + len(encoded.encode()) > MAX_MESSAGE_BYTES:
            messages.append('{"type": "output", "chunks": [' + ", ".join(batch) + "]}")
            batch, size = [], 0
        batch.append(encoded)
        size += len(encoded.encode())
    if batch:
        messages.append('{"type": "output", "chunks": [' + ", ".join(batch) + "]}")
    return messages


class ExecutionConsumer(AsyncJsonWebsocketConsumer):
    @classmethod
    async def encode_json(cls, content: Any) -> str:
        # Not ASCII-escaped: non-ASCII output would otherwise take 6 bytes a character.
        return json.dumps(content, ensure_ascii=False)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        """Serve one socket, with the channel layer kept out of the dispatch loop.

        channels' base class reads the layer in the same loop as the client's frames, so one
        layer error (Redis down) would end the connection. Here the layer only rings the
        doorbell, from a task of its own (`listen`), and the stream works without it.
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
        self.doorbell = asyncio.Event()
        # Whether rings arrive: None until the first try to join the execution's group.
        self.layer_works: bool | None = None
        self.tasks.append(asyncio.create_task(self.pump()))
        layer = get_channel_layer()
        if layer is not None:
            self.tasks.append(asyncio.create_task(self.listen(layer)))

    async def disconnect(self, code: int) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        """Clients only listen; anything they send (JSON or not) is ignored."""

    async def refusal(self) -> int | None:
        """Why this socket may not stream, as its close code; None while it may.

        Asked on connect and again every LIVE_ACCESS_RECHECK_SECONDS, from the session as it
        is stored now: a logout, a password change or a deactivation signs the socket out,
        and a removed membership makes the execution vanish.
        """
        session = import_module(settings.SESSION_ENGINE).SessionStore(
            self.scope["session"].session_key
        )
        user = await get_user({"session": session})
        if not user.is_authenticated:
            return CLOSE_UNAUTHENTICATED
        if not await database_sync_to_async(self._visible)(user):
            # Not found and not allowed look the same: existence is not leaked.
            return CLOSE_NOT_FOUND
        return None

    def _visible(self, user: Any) -> bool:
        return policy.visible(Execution.objects.filter(pk=self.execution_id), user).exists()

    def _read_new(self) -> tuple[dict[str, Any], list[dict[str, Any]], bool]:
        """The current status, the next chunks, and whether more chunks may be waiting."""
        # Status first, chunks second: once a finished status is read, every chunk of the
        # execution is already committed, so the chunks read next are the last ones.
        execution = Execution.objects.prefetch_related("host_runs").get(pk=self.execution_id)
        status = status_message(execution)
        chunks, more = logs.read_page(self.execution_id, self.last_seq)
        return status, [chunk_message(chunk) for chunk in chunks], more

    async def pump(self) -> None:
        try:
            await self._follow()
        except asyncio.CancelledError:
            raise
        except Exception:
            # Never leave a client on a silent socket: closing makes it reconnect with `after`.
            logger.exception("live output of execution %s failed", self.execution_id)
            await self.close(code=CLOSE_SERVER_ERROR)

    def poll_seconds(self) -> float:
        """How long to wait for a ring before reading the database anyway."""
        if self.layer_works:
            return settings.LIVE_POLL_SECONDS
        return min(settings.LIVE_POLL_SECONDS, settings.LIVE_FALLBACK_POLL_SECONDS)

    async def _follow(self) -> None:
        loop = asyncio.get_running_loop()
        recheck_at = loop.time() + settings.LIVE_ACCESS_RECHECK_SECONDS
        sent_status: dict[str, Any] | None = None
        while True:
            if loop.time() >= recheck_at:
                refusal = await self.refusal()
                if refusal is not None:
                    await self.close(code=refusal)
                    return
                recheck_at = loop.time() + settings.LIVE_ACCESS_RECHECK_SECONDS
            self.doorbell.clear()
            status, chunks, more = await database_sync_to_async(self._read_new)()
            for message in output_messages(chunks):
                await self.send(text_data=message)
            if chunks:
                self.last_seq = chunks[-1]["seq"]
            if status != sent_status:
                await self.send_json(status)
                sent_status = status
            if more:
                continue  # more is stored: keep sending before waiting
            if status["execution"]["finished"]:
                await self.send_json({"type": "end"})
                return
            wait = min(self.poll_seconds(), max(0.0, recheck_at - loop.time()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.doorbell.wait(), wait)

    async def listen(self, layer: BaseChannelLayer) -> None:
        """Ring the doorbell for every message of the channel layer while the socket is open.

        The layer may fail at any time (Redis down): the stream then reads the database every
        LIVE_FALLBACK_POLL_SECONDS, and this loop tries to join again as often. The group is
        also joined again every LIVE_POLL_SECONDS, because a restarted Redis has forgotten it
        without an error reaching every consumer (channels-redis has one reader per process).
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
        # Either way the follower reads now and waits for the new interval: a ring may have
        # been lost, and a wait meant for a working doorbell may be far too long now.
        self.doorbell.set()
