"""A live-output client for tests: a logged-in browser's headers and a socket that collects."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from channels.testing import WebsocketCommunicator
from django.test import Client

from tsubame.asgi import build_application

SITE = "localhost"
ORIGIN = f"http://{SITE}"


# Each step prints a line, then waits for the test to create the file go<step> in {dir}.
GATED_SCRIPT = (
    "for step in 1 2 3 4; do echo step$step; "
    'while [ ! -e "{dir}/go$step" ]; do sleep 0.02; done; done'
)


def go(directory: Path, step: int) -> None:
    """Let a GATED_SCRIPT run past `step`."""
    (directory / f"go{step}").touch()


def browser_headers(client: Client) -> list[tuple[bytes, bytes]]:
    """What a browser on the site sends: the client's session cookie, Host and own Origin."""
    cookie = f"sessionid={client.cookies['sessionid'].value}"
    return [(b"cookie", cookie.encode()), (b"host", SITE.encode()), (b"origin", ORIGIN.encode())]


def session_headers(user: Any) -> list[tuple[bytes, bytes]]:
    client = Client()
    client.force_login(user)
    return browser_headers(client)


class LiveClient:
    """One WebSocket to /ws/executions/<id>/ that gathers the output text it receives."""

    def __init__(
        self, execution_id: int, headers: list[tuple[bytes, bytes]], query: str = ""
    ) -> None:
        path = f"/ws/executions/{execution_id}/" + (f"?{query}" if query else "")
        self.communicator = WebsocketCommunicator(build_application(), path, headers=headers)
        self.text = ""
        self.messages: list[dict[str, Any]] = []

    async def open(self) -> None:
        connected, _ = await self.communicator.connect(timeout=10)
        assert connected

    async def receive(self, timeout: float) -> dict[str, Any]:
        """The next message: a JSON message, or the close as {"type": "websocket.close", ...}."""
        output = await self.communicator.receive_output(timeout=timeout)
        if output["type"] == "websocket.close":
            return output
        message = json.loads(output["text"])
        self.messages.append(message)
        if message["type"] == "output":
            self.text += "".join(chunk["text"] for chunk in message["chunks"])
        return message

    async def wait_for(self, text: str, timeout: float = 30) -> None:
        async with asyncio.timeout(timeout):
            while text not in self.text:
                await self.receive(timeout)

    async def closed(self, timeout: float = 30) -> int:
        """Read on until the server closes the socket; its close code."""
        async with asyncio.timeout(timeout):
            while (message := await self.receive(timeout))["type"] != "websocket.close":
                pass
        return message["code"]

    async def close(self) -> None:
        await self.communicator.disconnect()
