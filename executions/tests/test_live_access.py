"""Who may listen to live output, on connect and for as long as the socket stays open.

Every refusal is a close after accept(), with the reason as the close code: a socket closed
before it is accepted reaches a real client as a bare HTTP 403.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from django.test import Client

from accounts.models import Membership, Role
from accounts.roles import role_group
from executions import runner
from executions.consumers import CLOSE_BAD_REQUEST, CLOSE_NOT_FOUND, CLOSE_UNAUTHENTICATED
from executions.models import Execution
from executions.tests.helpers import start
from executions.tests.live_client import (
    GATED_SCRIPT,
    ORIGIN,
    SITE,
    LiveClient,
    browser_headers,
    go,
    session_headers,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]

PASSWORD = "pw-listener-123!"


async def _refused(execution_id: int, headers, query: str = "") -> tuple[int, list]:
    """Connect; the close code and whatever was sent before it."""
    client = LiveClient(execution_id, headers, query=query)
    await client.open()  # accepted: a refusal must reach the client with its reason
    code = await client.closed(timeout=10)
    await client.close()
    return code, client.messages


def test_anonymous_client_is_told_it_is_signed_out(make_server, make_job):
    execution = start(make_job("echo secret", [make_server()]))
    headers = [(b"host", SITE.encode()), (b"origin", ORIGIN.encode())]
    code, messages = async_to_sync(_refused)(execution.pk, headers)
    assert code == CLOSE_UNAUTHENTICATED
    assert messages == []


def test_user_without_permission_cannot_tell_the_execution_exists(
    make_server, make_job, django_user_model, team
):
    execution = start(make_job("echo secret", [make_server()]))
    outsider = django_user_model.objects.create_user("outsider", password=PASSWORD)
    headers = session_headers(outsider)
    assert async_to_sync(_refused)(execution.pk, headers) == (CLOSE_NOT_FOUND, [])
    assert async_to_sync(_refused)(execution.pk + 999, headers) == (CLOSE_NOT_FOUND, [])

    Membership.objects.create(team=team, user=outsider, role=role_group(Role.VIEWER))
    runner.run_execution(execution.pk)

    async def listen() -> str:
        client = LiveClient(execution.pk, headers)
        await client.open()
        await client.wait_for("secret\n")
        await client.close()
        return client.text

    assert async_to_sync(listen)() == "secret\n"


def test_a_malformed_resume_point_is_a_bad_request(make_server, make_job, superuser):
    execution = start(make_job("echo hi", [make_server()]))
    code, messages = async_to_sync(_refused)(
        execution.pk, session_headers(superuser), query="after=soon"
    )
    assert (code, messages) == (CLOSE_BAD_REQUEST, [])


@pytest.fixture
def streaming(
    settings, make_server, make_job, team, django_user_model, shared_dir: Path, in_background
) -> Iterator[tuple[Execution, Client, Membership]]:
    """A running execution, and a viewer of its team logged in through a real session."""
    settings.LIVE_ACCESS_RECHECK_SECONDS = 0.5
    execution = start(make_job(GATED_SCRIPT.format(dir=shared_dir), [make_server()]))
    user = django_user_model.objects.create_user("vera", password=PASSWORD)
    membership = Membership.objects.create(team=team, user=user, role=role_group(Role.VIEWER))
    client = Client()
    assert client.login(username="vera", password=PASSWORD)
    in_background(lambda: runner.run_execution(execution.pk))
    yield execution, client, membership
    for step in (1, 2, 3, 4):
        go(shared_dir, step)


def _revoked_mid_stream(execution: Execution, client: Client, revoke: Callable[[], None]) -> int:
    """Stream until output arrives, revoke access, and return the code the socket closes with."""

    async def scenario() -> int:
        listener = LiveClient(execution.pk, browser_headers(client))
        await listener.open()
        await listener.wait_for("step1\n")
        await database_sync_to_async(revoke)()
        # Nothing else ends this stream: the script waits for the test to let it go on.
        code = await listener.closed(timeout=15)
        await listener.close()
        return code

    return async_to_sync(scenario)()


def test_a_removed_member_stops_receiving_output(streaming):
    execution, client, membership = streaming
    assert _revoked_mid_stream(execution, client, membership.delete) == CLOSE_NOT_FOUND


def test_logging_out_ends_the_live_stream(streaming):
    execution, client, _ = streaming
    # The logout of another tab of the same browser: the session is gone from the store.
    assert _revoked_mid_stream(execution, client, lambda: client.post("/logout/")) == (
        CLOSE_UNAUTHENTICATED
    )


def test_a_deactivated_user_stops_receiving_output(streaming):
    execution, client, membership = streaming

    def deactivate() -> None:
        membership.user.is_active = False
        membership.user.save(update_fields=["is_active"])

    assert _revoked_mid_stream(execution, client, deactivate) == CLOSE_UNAUTHENTICATED


def test_a_password_change_elsewhere_signs_the_stream_out(streaming):
    execution, client, membership = streaming

    def change_password() -> None:
        membership.user.set_password("pw-changed-elsewhere-456!")
        membership.user.save(update_fields=["password"])

    assert _revoked_mid_stream(execution, client, change_password) == CLOSE_UNAUTHENTICATED
