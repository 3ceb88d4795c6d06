"""The production web server refuses oversized request bodies before holding them in memory."""

from __future__ import annotations

import base64
import json
import os
import select
import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import pytest
from django.test import Client

from accounts.models import ApiToken
from executions.tests.helpers import start
from tsubame.tests.processes import app_environment, start_webserver, stop

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(240)]

MB = 1024 * 1024
LIMIT = 6 * MB
BLOCK = b"x" * (16 * 1024)  # the body is sent block by block, never held whole


@dataclass
class RunningServer:
    pid: int
    port: int
    log: Path

    def rss_bytes(self) -> int:
        """The process's resident memory now."""
        return self._status_kib("VmRSS") * 1024

    def peak_rss_bytes(self) -> int:
        """The most resident memory the process has had since it started."""
        return self._status_kib("VmHWM") * 1024

    def _status_kib(self, field: str) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
        raise AssertionError(f"no {field} in /proc/{self.pid}/status")


@pytest.fixture
def webserver(tmp_path: Path) -> Iterator[RunningServer]:
    env = app_environment() | {"HTTP_MAX_BODY_BYTES": str(LIMIT)}
    log = tmp_path / "webserver.log"
    process, port = start_webserver(env, log)
    try:
        yield RunningServer(process.pid, port, log)
        assert process.poll() is None, log.read_text(errors="replace")
    finally:
        stop([process])


@dataclass
class Exchange:
    body_bytes_sent: int
    response: bytes

    @property
    def status(self) -> int:
        return int(self.response.split(b" ", 2)[1])


def post(port: int, body_bytes: int, *, chunked: bool, token: str = "") -> Exchange:
    """POST `body_bytes` of body to the API, stopping as soon as the server answers or closes."""
    head = (
        b"POST /api/v1/jobs/ HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
        b"Content-Type: application/json\r\n"
    )
    if token:
        head += b"Authorization: Bearer %s\r\n" % token.encode()
    head += b"Transfer-Encoding: chunked" if chunked else b"Content-Length: %d" % body_bytes
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sock.sendall(head + b"\r\n\r\n")
        sent, response = 0, b""
        while sent < body_bytes:
            readable, writable, _ = select.select([sock], [sock], [], 60)
            if readable:
                break  # an answer before the whole body: read it below
            assert writable, "the server neither reads the body nor answers"
            block = BLOCK[: body_bytes - sent]
            data = b"%x\r\n%s\r\n" % (len(block), block) if chunked else block
            try:
                sock.sendall(data)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(block)
        else:
            if chunked:
                sock.sendall(b"0\r\n\r\n")
        try:
            while chunk := sock.recv(65536):
                response += chunk
        except ConnectionResetError:
            pass  # closed with the rest of our body unread: the answer came before
    return Exchange(sent, response)


@pytest.mark.parametrize(
    ("body_bytes", "chunked"),
    [(800 * MB, False), (400 * MB, True)],
    ids=["800MB-content-length", "400MB-chunked"],
)
def test_an_oversized_body_is_refused_before_it_is_held_in_memory(
    webserver: RunningServer, body_bytes: int, chunked: bool
) -> None:
    assert post(webserver.port, 100, chunked=chunked).status == 401  # warm: Django is loaded
    before = webserver.rss_bytes()

    exchange = post(webserver.port, body_bytes, chunked=chunked)

    assert exchange.status == 413, exchange.response[:500]
    assert b"connection: close" in exchange.response.lower()
    assert exchange.body_bytes_sent < body_bytes / 4  # it stopped reading early
    growth = webserver.peak_rss_bytes() - before
    assert growth < 50 * MB, f"the web server grew by {growth / MB:.0f} MB"
    assert b"refused a request body from 127.0.0.1" in webserver.log.read_bytes()


def test_a_declared_length_over_the_limit_is_refused_before_any_body_is_read(
    webserver: RunningServer,
) -> None:
    with socket.create_connection(("127.0.0.1", webserver.port), timeout=30) as sock:
        sock.sendall(
            b"POST /api/v1/jobs/ HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Expect: 100-continue\r\nContent-Length: %d\r\n\r\n" % (LIMIT + 1)
        )
        response = b""
        while chunk := sock.recv(65536):
            response += chunk
    assert response.startswith(b"HTTP/1.1 413 ")
    assert b"100 Continue" not in response  # nothing invites the body that is refused


def test_a_body_within_the_limit_reaches_the_application(
    webserver: RunningServer, superuser
) -> None:
    token = ApiToken.issue(superuser, "web server test")[1]
    # Past the API's own limit but within the server's: the API reads it and answers itself.
    exchange = post(webserver.port, LIMIT - 1024, chunked=False, token=token)
    assert exchange.body_bytes_sent == LIMIT - 1024
    assert exchange.status == 413
    body = exchange.response.partition(b"\r\n\r\n")[2]
    assert json.loads(body) == {"detail": f"The request body is larger than {5 * MB} bytes."}

    # DRF reads no body without a Content-Length, so a chunked one is an empty job: the API's
    # 400 shows that the whole body was received and the request reached the application.
    exchange = post(webserver.port, LIMIT - 1024, chunked=True, token=token)
    assert exchange.body_bytes_sent == LIMIT - 1024
    assert exchange.status == 400
    assert b'"script":["This field is required."]' in exchange.response


def test_pages_and_the_live_websocket_work_through_it(
    webserver: RunningServer, superuser, make_server, make_job
) -> None:
    execution = start(make_job("echo hi", [make_server()]))
    client = Client()
    client.force_login(superuser)
    session = client.cookies["sessionid"].value

    with socket.create_connection(("127.0.0.1", webserver.port), timeout=30) as sock:
        sock.sendall(b"GET /admin/login/ HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        assert sock.makefile("rb").readline().startswith(b"HTTP/1.1 200 ")

    key = base64.b64encode(os.urandom(16))
    with socket.create_connection(("127.0.0.1", webserver.port), timeout=30) as sock:
        sock.sendall(
            b"GET /ws/executions/%d/ HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
            b"Origin: http://127.0.0.1:%d\r\nCookie: sessionid=%s\r\n"
            b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n"
            % (execution.pk, webserver.port, webserver.port, session.encode(), key)
        )
        stream = sock.makefile("rb")
        assert stream.readline().startswith(b"HTTP/1.1 101 ")
        while stream.readline() != b"\r\n":
            pass  # the rest of the handshake's headers
        message = json.loads(read_frame(stream))
    assert message["type"] == "status"
    assert message["execution"]["id"] == execution.pk


def read_frame(stream: BinaryIO) -> bytes:
    """The payload of the next (unmasked, unfragmented) frame a server sends."""
    _flags, length = stream.read(2)
    length &= 0x7F
    if length == 126:
        (length,) = struct.unpack(">H", stream.read(2))
    elif length == 127:
        (length,) = struct.unpack(">Q", stream.read(8))
    return stream.read(length)
