"""Refusals reach a real client through daphne as close codes, never as a bare HTTP 403.

The client here speaks RFC 6455 over a plain socket, so the test sees exactly what daphne
sends: the handshake's status line, then the frames.
"""

from __future__ import annotations

import base64
import os
import socket
from urllib.parse import urlsplit

import pytest
from django.test import Client

from executions.consumers import CLOSE_NOT_FOUND, CLOSE_UNAUTHENTICATED
from executions.tests.helpers import start
from tsubame.websocket import CLOSE_FORBIDDEN_ORIGIN

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]


def open_socket(url: str, path: str, origin: str, cookie: str = "") -> tuple[str, int | None]:
    """The handshake's status line and, once upgraded, the code of the server's close frame."""
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
    with socket.create_connection((address.hostname, address.port), timeout=15) as sock:
        sock.sendall(("\r\n".join(request) + "\r\n\r\n").encode())
        stream = sock.makefile("rb")
        status = stream.readline().decode().strip()
        while stream.readline() not in (b"\r\n", b""):
            pass  # the response headers
        if " 101 " not in status:
            return status, None
        while True:  # frames up to the close frame; a server's frames are not masked
            first, second = stream.read(2)
            length = second & 0x7F
            if length >= 126:
                length = int.from_bytes(stream.read(2 if length == 126 else 8), "big")
            payload = stream.read(length)
            if first & 0x0F == 0x8:
                return status, int.from_bytes(payload[:2], "big")


def test_refusals_arrive_as_close_codes_through_daphne(
    live_app, make_server, make_job, django_user_model
):
    execution = start(make_job("echo secret", [make_server()]))
    path = f"/ws/executions/{execution.pk}/"
    outsider = django_user_model.objects.create_user("outsider", password="pw-outsider-123!")
    client = Client()
    client.force_login(outsider)
    cookie = f"sessionid={client.cookies['sessionid'].value}"

    assert open_socket(live_app.url, path, live_app.url) == (
        "HTTP/1.1 101 Switching Protocols",
        CLOSE_UNAUTHENTICATED,
    )
    assert open_socket(live_app.url, path, live_app.url, cookie)[1] == CLOSE_NOT_FOUND
    hostile = live_app.url.rsplit(":", 1)[0] + ":9999"
    assert open_socket(live_app.url, path, hostile, cookie)[1] == CLOSE_FORBIDDEN_ORIGIN
