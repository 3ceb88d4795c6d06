"""Following an execution over its WebSocket to the end, across dropped connections.

The server replays what is stored after `?after=<seq>` and then streams; the client asks
again with the last sequence number it printed whenever the connection drops, so nothing is
missed and nothing printed twice, and it keeps no output once printed.
"""

from __future__ import annotations

import json
import time
from typing import Any

from websockets.exceptions import ConnectionClosed, InvalidHandshake
from websockets.sync.client import connect

from tsubame_cli.api import Api
from tsubame_cli.render import Printer

# Close codes of the server that no reconnection can change.
REFUSALS = {
    4400: "the server refused the request",
    4401: "the server refused the token",
    4403: "the server refused the connection's origin",
    4404: "no such execution",
}
# A server that cannot be reached for this long (e.g. while it restarts) is given up on.
GIVE_UP_SECONDS = 60.0
RETRY_SECONDS = (0.2, 0.5, 1.0, 2.0)
# The server's messages are at most 512 KiB of JSON.
MAX_MESSAGE_BYTES = 4 * 1024 * 1024


class FollowError(Exception):
    """Following cannot go on: exit 2 with this message."""


class Follower:
    """Prints an execution's output from after `after` until its end; `last_seq` is what it
    printed last, so a Follower interrupted (Ctrl-C) can be run again without a gap."""

    def __init__(self, api: Api, execution_id: int, printer: Printer, after: int = -1) -> None:
        self.api = api
        self.execution_id = execution_id
        self.printer = printer
        self.last_seq = after
        self.status: dict[str, Any] | None = None

    def run(self) -> dict[str, Any]:
        """The execution's last status message, once it has finished and all was printed."""
        failing_since: float | None = None
        attempt = 0
        while True:
            try:
                with connect(
                    self.api.websocket_url(
                        f"/ws/executions/{self.execution_id}/?after={self.last_seq}"
                    ),
                    additional_headers={"Authorization": self.api.headers["Authorization"]},
                    max_size=MAX_MESSAGE_BYTES,
                    open_timeout=10,
                ) as socket:
                    failing_since, attempt = None, 0
                    for message in socket:
                        if (end := self._handle(json.loads(message))) is not None:
                            return end
                    code = socket.close_code
            except BrokenPipeError:
                raise  # our own output was closed (`| head`): not a dropped connection
            except ConnectionClosed as exc:
                code = exc.rcvd.code if exc.rcvd else None
            except (OSError, InvalidHandshake, TimeoutError):
                code = None
            finally:
                self.printer.flush()
            if code in REFUSALS:
                raise FollowError(f"{REFUSALS[code]} (WebSocket close code {code})")
            # Dropped (or 4500, the server's "reconnect"): ask again after what was printed.
            failing_since = failing_since or time.monotonic()
            if time.monotonic() - failing_since > GIVE_UP_SECONDS:
                raise FollowError(
                    f"lost the connection to {self.api.url} for {GIVE_UP_SECONDS:.0f} s"
                )
            time.sleep(RETRY_SECONDS[min(attempt, len(RETRY_SECONDS) - 1)])
            attempt += 1

    def _handle(self, message: dict[str, Any]) -> dict[str, Any] | None:
        """Act on one message; at the end, the last status (the server sends one first)."""
        if message["type"] == "output":
            for chunk in message["chunks"]:
                self.printer.chunk(chunk)
                self.last_seq = chunk["seq"]
            self.printer.flush()
        elif message["type"] == "status":
            self.status = message
        elif message["type"] == "end":
            return self.status
        return None
