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
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
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

    async def connect(self) -> None:
        self.execution_id = int(self.scope["url_route"]["kwargs"]["execution_id"])
        self.pump_task: asyncio.Task[None] | None = None
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        if not await database_sync_to_async(self._visible)(user):
            # Not found and not allowed look the same: existence is not leaked.
            await self.close(code=CLOSE_NOT_FOUND)
            return
        query = parse_qs(self.scope.get("query_string", b"").decode())
        try:
            self.last_seq = int(query.get("after", ["-1"])[0])
        except ValueError:
            await self.close(code=CLOSE_BAD_REQUEST)
            return
        self.doorbell = asyncio.Event()
        await self.channel_layer.group_add(live.group_name(self.execution_id), self.channel_name)
        await self.accept()
        self.pump_task = asyncio.create_task(self.pump())

    async def disconnect(self, code: int) -> None:
        if self.pump_task:
            self.pump_task.cancel()
            await self.channel_layer.group_discard(
                live.group_name(self.execution_id), self.channel_name
            )

    async def execution_changed(self, event: dict[str, Any]) -> None:
        self.doorbell.set()

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        """Clients only listen; anything they send (JSON or not) is ignored."""

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

    async def _follow(self) -> None:
        sent_status: dict[str, Any] | None = None
        while True:
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
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.doorbell.wait(), settings.LIVE_POLL_SECONDS)
