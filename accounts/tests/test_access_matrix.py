"""Every API endpoint and the WebSocket, for every persona, on an object of each team.

The expected outcome of each cell comes from one rule (world.expected): a role's permissions
in the object's team, 404 for another team's objects, 401 for anonymous callers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator

from accounts.tests.world import PERSONAS, TeamObjects, World, build_world, expected
from executions.consumers import CLOSE_NOT_FOUND, CLOSE_UNAUTHENTICATED
from tsubame.asgi import build_application

pytestmark = [pytest.mark.django_db, pytest.mark.timeout(60)]


@dataclass(frozen=True)
class Endpoint:
    name: str
    method: str
    url: Callable[[TeamObjects], str]
    level: str  # view, operate, manage, or superuser (no role holds it)
    ok: int
    body: Callable[[TeamObjects, World], dict[str, Any]] | None = None
    hidden: int = 404  # what a caller gets for an object of a team they cannot see


ENDPOINTS = [
    Endpoint("server-detail", "get", lambda o: f"/api/v1/servers/{o.server.pk}/", "view", 200),
    Endpoint(
        "server-update",
        "patch",
        lambda o: f"/api/v1/servers/{o.server.pk}/",
        "manage",
        200,
        lambda o, w: {"description": "changed"},
    ),
    Endpoint("server-delete", "delete", lambda o: f"/api/v1/servers/{o.server.pk}/", "manage", 204),
    Endpoint(
        "server-test", "post", lambda o: f"/api/v1/servers/{o.server.pk}/test/", "operate", 200
    ),
    Endpoint(
        "server-host-key",
        "post",
        lambda o: f"/api/v1/servers/{o.server.pk}/host-key/",
        "manage",
        200,
    ),
    Endpoint(
        "server-trust",
        "post",
        lambda o: f"/api/v1/servers/{o.server.pk}/host-key/trust/",
        "manage",
        200,
        lambda o, w: {"fingerprint": o.server.host_key_fingerprint},
    ),
    Endpoint(
        "server-create",
        "post",
        lambda o: "/api/v1/servers/",
        "manage",
        201,
        lambda o, w: {
            "team": o.team.pk,
            "name": "new",
            "host": "127.0.0.1",
            "username": "x",
            "password": "pw",
            "auth_method": "password",
        },
        hidden=400,  # naming a team you cannot see is an invalid choice
    ),
    Endpoint("job-detail", "get", lambda o: f"/api/v1/jobs/{o.job.pk}/", "view", 200),
    Endpoint(
        "job-update",
        "patch",
        lambda o: f"/api/v1/jobs/{o.job.pk}/",
        "manage",
        200,
        lambda o, w: {"script": "echo changed"},
    ),
    Endpoint("job-delete", "delete", lambda o: f"/api/v1/jobs/{o.job.pk}/", "manage", 204),
    Endpoint(
        "job-run",
        "post",
        lambda o: f"/api/v1/jobs/{o.job.pk}/run/",
        "operate",
        201,
        lambda o, w: {"servers": [o.server.pk]},
    ),
    Endpoint(
        "job-create",
        "post",
        lambda o: "/api/v1/jobs/",
        "manage",
        201,
        lambda o, w: {"team": o.team.pk, "name": "new", "script": "true"},
        hidden=400,
    ),
    Endpoint(
        "execution-detail", "get", lambda o: f"/api/v1/executions/{o.execution.pk}/", "view", 200
    ),
    Endpoint(
        "execution-cancel",
        "post",
        lambda o: f"/api/v1/executions/{o.execution.pk}/cancel/",
        "operate",
        200,
    ),
    Endpoint(
        "execution-log", "get", lambda o: f"/api/v1/executions/{o.execution.pk}/log/", "view", 200
    ),
    Endpoint(
        "execution-raw-log",
        "get",
        lambda o: f"/api/v1/executions/{o.execution.pk}/log/raw/",
        "view",
        200,
    ),
    Endpoint("team-detail", "get", lambda o: f"/api/v1/teams/{o.team.pk}/", "view", 200),
    Endpoint(
        "team-update",
        "patch",
        lambda o: f"/api/v1/teams/{o.team.pk}/",
        "superuser",  # the team's own settings: no role grants accounts.change_team
        200,
        lambda o, w: {"keep_last_runs": 3},
    ),
    Endpoint("team-members", "get", lambda o: f"/api/v1/teams/{o.team.pk}/members/", "view", 200),
    Endpoint(
        "team-member-add",
        "post",
        lambda o: f"/api/v1/teams/{o.team.pk}/members/",
        "manage",
        201,
        lambda o, w: {"user": w.users["viewer"].username, "role": "operator"},
    ),
    Endpoint(
        "team-member-change",
        "patch",
        lambda o: f"/api/v1/teams/{o.team.pk}/members/{o.member.username}/",
        "manage",
        200,
        lambda o, w: {"role": "operator"},
    ),
    Endpoint(
        "team-member-remove",
        "delete",
        lambda o: f"/api/v1/teams/{o.team.pk}/members/{o.member.username}/",
        "manage",
        204,
    ),
]


@pytest.fixture
def world(sshd) -> World:
    return build_world(sshd)


def cases() -> list[Any]:
    return [
        pytest.param(endpoint, persona, team, id=f"{endpoint.name}-{persona}-{team}")
        for endpoint in ENDPOINTS
        for persona in PERSONAS
        for team in ("ours", "theirs")
    ]


@pytest.mark.parametrize(("endpoint", "persona", "team"), cases())
def test_api_access(world: World, endpoint: Endpoint, persona: str, team: str) -> None:
    objects = world.ours if team == "ours" else world.theirs
    call = getattr(world.client(persona), endpoint.method)
    body = endpoint.body(objects, world) if endpoint.body else None
    response = call(endpoint.url(objects), body, format="json")

    outcome = expected(persona, endpoint.level, team)
    if outcome == 404:
        outcome = endpoint.hidden
    wanted = endpoint.ok if outcome == "ok" else outcome
    assert response.status_code == wanted, getattr(response, "data", response)


LISTS = {
    "/api/v1/servers/": lambda o: o.server.pk,
    "/api/v1/jobs/": lambda o: o.job.pk,
    "/api/v1/executions/": lambda o: o.execution.pk,
    "/api/v1/teams/": lambda o: o.team.pk,
}


@pytest.mark.parametrize("url", LISTS)
@pytest.mark.parametrize("persona", PERSONAS)
def test_lists_show_only_visible_teams(world: World, url: str, persona: str) -> None:
    response = world.client(persona).get(url)
    if persona == "anonymous":
        assert response.status_code == 401
        return
    assert response.status_code == 200
    ids = {item["id"] for item in response.json()["results"]}
    for team in ("ours", "theirs"):
        objects = world.ours if team == "ours" else world.theirs
        visible = expected(persona, "view", team) == "ok"
        assert (LISTS[url](objects) in ids) == visible, (team, ids)


@pytest.mark.parametrize("persona", PERSONAS)
def test_audit_trail_is_for_managers_of_the_team(world: World, persona: str) -> None:
    response = world.client(persona).get("/api/v1/audit/")
    if persona == "anonymous":
        assert response.status_code == 401
        return
    teams = {event["team"] for event in response.json()["results"]}
    allowed = {
        "viewer": set(),
        "operator": set(),
        "manager": {world.ours.team.pk},
        "other_team_manager": {world.theirs.team.pk},
        "superuser": {world.ours.team.pk, world.theirs.team.pk},
    }[persona]
    assert teams == allowed


async def subscribe(path: str, headers: list[tuple[bytes, bytes]]) -> int | None:
    """The code the socket is closed with, or None when it streams."""
    communicator = WebsocketCommunicator(build_application(), path, headers=headers)
    connected, _ = await communicator.connect(timeout=10)
    assert connected  # refusals come after accept, so that the client learns the reason
    first = await communicator.receive_output(timeout=10)
    await communicator.disconnect()
    return first["code"] if first["type"] == "websocket.close" else None


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("team", ["ours", "theirs"])
@pytest.mark.parametrize("persona", PERSONAS)
def test_websocket_subscription_access(world: World, client, persona: str, team: str) -> None:
    objects = world.ours if team == "ours" else world.theirs
    headers = [(b"host", b"localhost"), (b"origin", b"http://localhost")]
    if persona != "anonymous":
        client.force_login(world.users[persona])
        headers.append((b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode()))
    code = async_to_sync(subscribe)(f"/ws/executions/{objects.execution.pk}/", headers)
    outcome = expected(persona, "view", team)
    assert code == {"ok": None, 401: CLOSE_UNAUTHENTICATED, 404: CLOSE_NOT_FOUND}[outcome]
