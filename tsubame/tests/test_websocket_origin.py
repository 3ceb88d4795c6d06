"""Only this site's own pages may open a WebSocket: scheme, host and port of the Origin count."""

from __future__ import annotations

import pytest
from asgiref.sync import async_to_sync

from executions import runner
from executions.tests.helpers import start
from executions.tests.live_client import LiveClient, session_headers
from tsubame.websocket import CLOSE_FORBIDDEN_ORIGIN, origin_allowed

TRUSTED = ["https://tsubame.example.com", "https://*.ops.example.com"]


def scope(origin: str | None, host: str | None, scheme: str = "ws", server=None) -> dict:
    headers = [(b"host", host.encode())] if host is not None else []
    headers += [(b"origin", origin.encode())] if origin is not None else []
    return {"type": "websocket", "scheme": scheme, "headers": headers, "server": server}


@pytest.fixture(autouse=True)
def site(settings) -> None:
    settings.ALLOWED_HOSTS = ["127.0.0.1", "localhost", "tsubame.example.com"]
    settings.CSRF_TRUSTED_ORIGINS = TRUSTED


@pytest.mark.parametrize(
    ("origin", "host", "scheme"),
    [
        ("http://127.0.0.1:8000", "127.0.0.1:8000", "ws"),
        ("http://localhost", "localhost", "ws"),
        ("https://localhost", "localhost", "wss"),
        ("https://localhost:4443", "localhost:4443", "wss"),
        # Behind a proxy that ends TLS: daphne sees ws, the trusted origin vouches.
        ("https://tsubame.example.com", "tsubame.example.com", "ws"),
        ("https://build.ops.example.com", "tsubame.example.com", "ws"),
        ("https://ops.example.com", "127.0.0.1:8000", "ws"),
    ],
)
def test_the_sites_own_origin_and_trusted_origins_may_connect(origin, host, scheme):
    assert origin_allowed(scope(origin, host, scheme))


@pytest.mark.parametrize(
    ("origin", "host", "scheme"),
    [
        # Another site on the same host: another port, or another scheme.
        ("http://127.0.0.1:9999", "127.0.0.1:8000", "ws"),
        ("https://localhost:4443", "localhost:8000", "ws"),
        ("https://localhost:8000", "localhost:8000", "ws"),
        ("http://localhost:8000", "localhost:8000", "wss"),
        ("http://localhost", "127.0.0.1", "ws"),
        ("http://evil.example", "127.0.0.1:8000", "ws"),
        # A name that resolves here but is not ours (DNS rebinding): Host and Origin agree.
        ("http://evil.example:8000", "evil.example:8000", "ws"),
        ("http://tsubame.example.com", "127.0.0.1:8000", "ws"),
        ("https://tsubame.example.com:8443", "127.0.0.1:8000", "ws"),
        ("http://build.ops.example.com", "127.0.0.1:8000", "ws"),
        ("https://evil-ops.example.com", "127.0.0.1:8000", "ws"),
        (None, "127.0.0.1:8000", "ws"),
        ("null", "127.0.0.1:8000", "ws"),
        ("http://127.0.0.1:8000", None, "ws"),
    ],
)
def test_other_origins_may_not(origin, host, scheme):
    assert not origin_allowed(scope(origin, host, scheme))


def test_without_a_host_header_the_servers_own_address_counts():
    assert origin_allowed(scope("http://127.0.0.1:8000", None, server=("127.0.0.1", 8000)))
    assert origin_allowed(scope("https://127.0.0.1", None, "wss", server=("127.0.0.1", 443)))
    assert not origin_allowed(scope("http://127.0.0.1:9999", None, server=("127.0.0.1", 8000)))


@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(120)
def test_another_site_on_this_host_is_refused_even_with_a_valid_session(
    make_server, make_job, superuser
):
    execution = start(make_job("echo secret", [make_server()]))
    runner.run_execution(execution.pk)
    session = [h for h in session_headers(superuser) if h[0] == b"cookie"]

    async def listen(origin: str, host: str) -> tuple[int | None, str]:
        client = LiveClient(
            execution.pk, [*session, (b"host", host.encode()), (b"origin", origin.encode())]
        )
        await client.open()
        message = await client.receive(timeout=10)
        code = message["code"] if message["type"] == "websocket.close" else None
        if code is None:
            await client.wait_for("secret\n")
        await client.close()
        return code, client.text

    for origin, host in (
        ("http://127.0.0.1:9999", "127.0.0.1:8000"),
        ("https://localhost:4443", "localhost:8000"),
    ):
        assert async_to_sync(listen)(origin, host) == (CLOSE_FORBIDDEN_ORIGIN, "")
    assert async_to_sync(listen)("http://127.0.0.1:8000", "127.0.0.1:8000") == (None, "secret\n")
    assert async_to_sync(listen)("https://tsubame.example.com", "127.0.0.1:8000") == (
        None,
        "secret\n",
    )
