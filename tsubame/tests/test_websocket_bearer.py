"""A live-output socket opened with an API token: the token's user, by the API's rules.

A bearer token needs no Origin (a page cannot set the header), but it never lends its
authority to a cookie: an invalid token is refused even beside a valid session, and a cookie
without a token still needs this site's Origin.
"""

from __future__ import annotations

from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.auth import AuthMiddlewareStack
from channels.testing import WebsocketCommunicator
from django.utils import timezone

from accounts.models import ApiToken, Membership, Role
from accounts.roles import role_group
from executions import runner
from executions.consumers import CLOSE_NOT_FOUND, CLOSE_UNAUTHENTICATED
from executions.tests.helpers import start
from executions.tests.live_client import GATED_SCRIPT, SITE, LiveClient, go, session_headers
from tsubame.websocket import CLOSE_FORBIDDEN_ORIGIN, BearerTokenMiddleware, SameOriginMiddleware

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]


def bearer(secret: str) -> list[tuple[bytes, bytes]]:
    """What the command-line client sends: a Host and the token, no Origin, no cookie."""
    return [(b"host", SITE.encode()), (b"authorization", f"Bearer {secret}".encode())]


async def listen(execution_id: int, headers: list[tuple[bytes, bytes]]) -> tuple[int | None, str]:
    """The close code (None when the stream reached its end) and the output received."""
    client = LiveClient(execution_id, headers)
    await client.open()
    while (message := await client.receive(timeout=10))["type"] not in ("end", "websocket.close"):
        pass
    await client.close()
    return message.get("code"), client.text


async def who(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """An application that tells whom the middleware let through as."""
    await receive()
    await send({"type": "websocket.accept"})
    user = scope["user"]
    await send({"type": "websocket.send", "text": user.username or "(anonymous)"})
    await send({"type": "websocket.close", "code": 1000})


async def let_through_as(headers: list[tuple[bytes, bytes]]) -> str | int:
    """The user the middleware passed on, or the close code it refused with."""
    stack = BearerTokenMiddleware(who, otherwise=SameOriginMiddleware(AuthMiddlewareStack(who)))
    communicator = WebsocketCommunicator(stack, "/", headers=headers)
    await communicator.connect(timeout=10)
    output = await communicator.receive_output(timeout=10)
    await communicator.disconnect()
    return output["code"] if output["type"] == "websocket.close" else output["text"]


def test_the_middleware_passes_a_token_on_as_its_user_and_nothing_else(
    superuser, django_user_model
):
    other = django_user_model.objects.create_user("other", password="pw-other-123!")
    _token, secret = ApiToken.issue(superuser, "cli")
    assert async_to_sync(let_through_as)(bearer(secret)) == "root"
    # Another user's session beside it changes nothing; a spoilt token is refused outright.
    assert async_to_sync(let_through_as)([*session_headers(other), *bearer(secret)]) == "root"
    spoilt = [*session_headers(other), *bearer(secret[:-2] + "xx")]
    assert async_to_sync(let_through_as)(spoilt) == CLOSE_UNAUTHENTICATED
    # Without a token: the session, from this site's pages only.
    assert async_to_sync(let_through_as)(session_headers(other)) == "other"
    cookie_only = [h for h in session_headers(other) if h[0] != b"origin"]
    assert async_to_sync(let_through_as)(cookie_only) == CLOSE_FORBIDDEN_ORIGIN


@pytest.fixture
def finished_execution(make_server, make_job):
    execution = start(make_job("echo secret", [make_server()]))
    runner.run_execution(execution.pk)
    return execution


def test_a_valid_token_streams_without_origin_or_cookie(finished_execution, superuser):
    _token, secret = ApiToken.issue(superuser, "cli")
    assert async_to_sync(listen)(finished_execution.pk, bearer(secret)) == (None, "secret\n")


def test_a_token_sees_what_its_user_may_see_on_the_api(finished_execution, django_user_model, team):
    outsider = django_user_model.objects.create_user("outsider", password="pw-outsider-123!")
    _token, secret = ApiToken.issue(outsider, "cli")
    assert async_to_sync(listen)(finished_execution.pk, bearer(secret)) == (CLOSE_NOT_FOUND, "")
    Membership.objects.create(team=team, user=outsider, role=role_group(Role.VIEWER))
    assert async_to_sync(listen)(finished_execution.pk, bearer(secret)) == (None, "secret\n")


@pytest.mark.parametrize(
    "spoil",
    [
        lambda token, secret: secret[:-2] + "xx",
        lambda token, secret: "not-a-token",
        lambda token, secret: (
            ApiToken.objects.filter(pk=token.pk).update(revoked_at=timezone.now()) and secret
        ),
        lambda token, secret: (
            ApiToken.objects.filter(pk=token.pk).update(expires_at=timezone.now()) and secret
        ),
    ],
    ids=["wrong", "malformed", "revoked", "expired"],
)
def test_an_invalid_token_is_refused_even_beside_a_valid_session(
    finished_execution, superuser, spoil
):
    token, secret = ApiToken.issue(superuser, "cli")
    secret = spoil(token, secret)
    # The superuser's own browser session, this site's Origin: all a cookie would need.
    headers = [*session_headers(superuser), (b"authorization", f"Bearer {secret}".encode())]
    assert async_to_sync(listen)(finished_execution.pk, headers) == (CLOSE_UNAUTHENTICATED, "")


def test_a_cookie_without_a_token_still_needs_this_sites_origin(finished_execution, superuser):
    cookie = [h for h in session_headers(superuser) if h[0] == b"cookie"]
    for headers in (
        [*cookie, (b"host", SITE.encode())],
        [*cookie, (b"host", SITE.encode()), (b"authorization", b"Basic cm9vdDpwdw==")],
    ):
        assert async_to_sync(listen)(finished_execution.pk, headers) == (
            CLOSE_FORBIDDEN_ORIGIN,
            "",
        )


def test_a_token_revoked_while_following_ends_the_stream(
    make_server, make_job, superuser, shared_dir, settings, in_background
):
    settings.LIVE_ACCESS_RECHECK_SECONDS = 0.2
    job = make_job(GATED_SCRIPT.format(dir=shared_dir), [make_server()])
    execution = start(job)
    in_background(lambda: runner.run_execution(execution.pk))
    token, secret = ApiToken.issue(superuser, "cli")

    async def follow() -> int:
        client = LiveClient(execution.pk, bearer(secret))
        await client.open()
        await client.wait_for("step1\n")
        await ApiToken.objects.filter(pk=token.pk).aupdate(revoked_at=timezone.now())
        code = await client.closed(timeout=10)
        await client.close()
        return code

    try:
        assert async_to_sync(follow)() == CLOSE_UNAUTHENTICATED
    finally:
        for step in range(1, 5):
            go(shared_dir, step)
