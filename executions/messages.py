"""The messages of the live-output protocol (documented in executions/consumers.py).

Built here once per read and shared by every viewer of the read (executions/fanout.py).
"""

from __future__ import annotations

import base64
import json
from typing import Any

from executions.models import Execution, LogChunk

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
