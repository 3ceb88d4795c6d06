"""Every UI page and action, for every persona, on an object of each team.

The same rule as the API matrix (world.expected), with the UI's answers: anonymous people are
sent to the login page, other teams' objects are 404 pages, forbidden actions 403 pages.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
from django.test import Client

from accounts.tests.world import PERSONAS, TeamObjects, World, build_world, expected

pytestmark = [pytest.mark.django_db, pytest.mark.timeout(60)]


@dataclass(frozen=True)
class Page:
    name: str
    method: str
    url: Callable[[TeamObjects], str]
    level: str
    ok: int  # 200 for a page, 302 for an action that redirects when done


PAGES = [
    Page("job-detail", "get", lambda o: f"/jobs/{o.job.pk}/", "view", 200),
    Page("job-edit", "get", lambda o: f"/jobs/{o.job.pk}/edit/", "manage", 200),
    Page("job-run", "post", lambda o: f"/jobs/{o.job.pk}/run/", "operate", 302),
    Page("job-delete", "get", lambda o: f"/jobs/{o.job.pk}/delete/", "manage", 200),
    Page("job-delete-post", "post", lambda o: f"/jobs/{o.job.pk}/delete/", "manage", 302),
    Page("server-detail", "get", lambda o: f"/servers/{o.server.pk}/", "view", 200),
    Page("server-edit", "get", lambda o: f"/servers/{o.server.pk}/edit/", "manage", 200),
    Page("server-delete", "get", lambda o: f"/servers/{o.server.pk}/delete/", "manage", 200),
    Page("server-delete-post", "post", lambda o: f"/servers/{o.server.pk}/delete/", "manage", 302),
    Page("server-test", "post", lambda o: f"/servers/{o.server.pk}/test/", "operate", 302),
    Page("server-trust", "get", lambda o: f"/servers/{o.server.pk}/trust/", "manage", 200),
    Page("execution-detail", "get", lambda o: f"/executions/{o.execution.pk}/", "view", 200),
    Page(
        "execution-cancel",
        "post",
        lambda o: f"/executions/{o.execution.pk}/cancel/",
        "operate",
        302,
    ),
]


@pytest.fixture
def world(sshd) -> World:
    return build_world(sshd)


def client_for(world: World, persona: str) -> Client:
    client = Client()
    if persona != "anonymous":
        client.force_login(world.users[persona])
    return client


@pytest.mark.parametrize("team", ["ours", "theirs"])
@pytest.mark.parametrize("persona", PERSONAS)
@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_ui_access(world: World, page: Page, persona: str, team: str) -> None:
    objects = world.ours if team == "ours" else world.theirs
    data = {"servers": [objects.server.pk]} if page.name == "job-run" else None
    response = getattr(client_for(world, persona), page.method)(page.url(objects), data)
    outcome = expected(persona, page.level, team)
    if outcome == 401:
        assert response.status_code == 302
        assert response["Location"].startswith("/login/")
    else:
        assert response.status_code == (page.ok if outcome == "ok" else outcome)


@pytest.mark.parametrize("persona", ["viewer", "operator", "manager", "superuser"])
def test_pages_offer_only_what_the_role_may_do(world: World, persona: str) -> None:
    client = client_for(world, persona)
    job_page = client.get(f"/jobs/{world.ours.job.pk}/").content.decode()
    servers_page = client.get("/servers/").content.decode()
    may_operate = persona in ("operator", "manager", "superuser")
    may_manage = persona in ("manager", "superuser")
    assert ('id="run-default"' in job_page) == may_operate
    assert (f"/jobs/{world.ours.job.pk}/edit/" in job_page) == may_manage
    assert (f"/jobs/{world.ours.job.pk}/delete/" in job_page) == may_manage
    assert (f"/servers/{world.ours.server.pk}/test/" in servers_page) == may_operate
    assert (f"/servers/{world.ours.server.pk}/trust/" in servers_page) == may_manage
    assert (world.theirs.server.name in servers_page) == (persona == "superuser")


@pytest.mark.parametrize("persona", ["viewer", "operator"])
def test_people_who_cannot_create_are_refused_the_new_pages(world: World, persona: str) -> None:
    client = client_for(world, persona)
    assert client.get("/jobs/new/").status_code == 403
    assert client.get("/servers/new/").status_code == 403


def test_lists_and_dashboard_need_a_login(world: World) -> None:
    for url in ("/", "/executions/", "/jobs/", "/servers/", "/tokens/", "/running/"):
        response = Client().get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith("/login/")
