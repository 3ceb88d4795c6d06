"""Refusals reach a real client through daphne as close codes, never as a bare HTTP 403.

The client here speaks RFC 6455 over a plain socket, so the test sees exactly what daphne
sends: the handshake's status line, then the frames.
"""

from __future__ import annotations

import pytest
from django.test import Client

from executions.consumers import CLOSE_NOT_FOUND, CLOSE_UNAUTHENTICATED
from executions.tests.helpers import start
from tsubame.tests import rawsocket
from tsubame.websocket import CLOSE_FORBIDDEN_ORIGIN

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]


def open_socket(url: str, path: str, origin: str, cookie: str = "") -> tuple[str, int | None]:
    """The handshake's status line and, once upgraded, the code of the server's close frame."""
    with rawsocket.connect(url, path, origin, cookie) as (status, stream):
        return status, (rawsocket.close_code(stream) if " 101 " in status else None)


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
