"""A WebSocket client over a plain socket (RFC 6455), for tests that must see exactly what a
real server process sends: the handshake's status line, then its frames."""

from __future__ import annotations

import base64
import json
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, BinaryIO
from urllib.parse import urlsplit


@contextmanager
def connect(url: str, path: str, origin: str, cookie: str = "") -> Iterator[tuple[str, BinaryIO]]:
    """The handshake's status line and the stream the frames arrive on."""
    address = urlsplit(url)
    request = [
        f"GET {path} HTTP/1.1",
        f"Host: {address.netloc}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}",
        "Sec-WebSocket-Version: 13",
        f"Origin: {origin}",
        *([f"Cookie: {cookie}"] if cookie else []),
    ]
    with socket.create_connection((address.hostname, address.port), timeout=30) as sock:
        sock.sendall(("\r\n".join(request) + "\r\n\r\n").encode())
        stream = sock.makefile("rb")
        status = stream.readline().decode().strip()
        while stream.readline() not in (b"\r\n", b""):
            pass  # the response headers
        yield status, stream


def frames(stream: BinaryIO) -> Iterator[tuple[int, bytes]]:
    """(opcode, payload) of each frame up to and including the close frame; a server's
    frames are not masked."""
    while True:
        first, second = stream.read(2)
        length = second & 0x7F
        if length >= 126:
            length = int.from_bytes(stream.read(2 if length == 126 else 8), "big")
        opcode, payload = first & 0x0F, stream.read(length)
        yield opcode, payload
        if opcode == 0x8:
            return


def close_code(stream: BinaryIO) -> int:
    """The code of the server's close frame, past any other frames."""
    for opcode, payload in frames(stream):
        if opcode == 0x8:
            return int.from_bytes(payload[:2], "big")
    raise AssertionError("the connection ended without a close frame")


def messages_until_end(stream: BinaryIO) -> list[dict[str, Any]]:
    """The JSON messages of a live-output socket up to its {"type": "end"}."""
    received = []
    for opcode, payload in frames(stream):
        if opcode == 0x1:
            received.append(json.loads(payload))
            if received[-1]["type"] == "end":
                return received
    raise AssertionError(f"closed before the end; got {received[-3:]}")
