"""Real local receivers for notifications: an SMTP server and an HTTP server that records
every request and answers as the test tells it."""

from __future__ import annotations

import email
import email.policy
import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from accounts.models import Source, Team
from notifications import services
from notifications.models import NotificationChannel
from notifications.tests.helpers import HOOK_URL
from tsubame.tests.processes import free_port


@pytest.fixture
def channel(team: Team) -> NotificationChannel:
    """A channel of the team, with no rule, that pages and forms can show and change."""
    return services.save_channel(
        NotificationChannel(team=team, name="ops-hook", url=HOOK_URL),
        actor=None,
        source=Source.SYSTEM,
    )


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class HttpReceiver:
    """Records requests; answers each with the next of `answers` (then 204)."""

    server: ThreadingHTTPServer
    requests: list[Request] = field(default_factory=list)
    answers: deque[tuple[int, bytes]] = field(default_factory=deque)
    # While set, a request is held unanswered until it is cleared (a destination that hangs).
    hold: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    arrived: threading.Condition = field(default_factory=threading.Condition)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def wait_for(self, count: int, timeout: float = 30) -> list[Request]:
        with self.arrived:
            if not self.arrived.wait_for(lambda: len(self.requests) >= count, timeout):
                raise AssertionError(f"{len(self.requests)} requests arrived, not {count}")
        return self.requests


@pytest.fixture
def http_receiver() -> Iterator[HttpReceiver]:
    receiver: HttpReceiver

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            with receiver.arrived:
                receiver.requests.append(Request(self.path, dict(self.headers), body))
                receiver.arrived.notify_all()
            if receiver.hold.is_set():
                receiver.release.wait(60)
            status, text = receiver.answers.popleft() if receiver.answers else (204, b"")
            try:
                self.send_response(status)
                self.send_header("Content-Length", str(len(text)))
                self.end_headers()
                self.wfile.write(text)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the sender gave up waiting (or was killed): nobody reads the answer

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    receiver = HttpReceiver(server)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield receiver
    receiver.release.set()
    server.shutdown()
    server.server_close()


@dataclass
class SmtpReceiver:
    port: int
    messages: list[EmailMessage] = field(default_factory=list)
    arrived: threading.Condition = field(default_factory=threading.Condition)

    def url(self, to: str = "ops@example.test") -> str:
        return f"mailto://127.0.0.1:{self.port}?from=tsubame@example.test&to={to}&mode=insecure"

    def wait_for(self, count: int, timeout: float = 30) -> list[EmailMessage]:
        with self.arrived:
            if not self.arrived.wait_for(lambda: len(self.messages) >= count, timeout):
                raise AssertionError(f"{len(self.messages)} messages arrived, not {count}")
        return self.messages


@pytest.fixture
def smtp_receiver() -> Iterator[SmtpReceiver]:
    receiver = SmtpReceiver(port=free_port())

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            message = email.message_from_bytes(envelope.content, policy=email.policy.default)
            with receiver.arrived:
                receiver.messages.append(message)  # type: ignore[arg-type]
                receiver.arrived.notify_all()
            return "250 OK"

    controller = Controller(Handler(), hostname="127.0.0.1", port=receiver.port)
    controller.start()
    yield receiver
    controller.stop()
