"""A server's page lists the runs on it that the viewer may see, a page at a time."""

from __future__ import annotations

import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.models import Role
from accounts.tests.world import World, build_world
from executions import services
from executions.models import HostRun, Trigger
from jobs.models import Job
from servers.models import Server

pytestmark = pytest.mark.django_db


@pytest.fixture
def world(sshd) -> World:
    return build_world(sshd)


def runs_shown(client, server: Server, **params: object) -> list[int]:
    response = client.get(f"/servers/{server.pk}/", params)
    assert response.status_code == 200
    page = response.content.decode()
    table = page[page.index('id="server-runs"') : page.index("</table>")]
    return [int(pk) for pk in re.findall(r'href="/executions/(\d+)/"', table)]


def test_the_server_list_links_to_each_servers_page(world, client):
    client.force_login(world.users["viewer"])
    page = client.get("/servers/").content.decode()
    assert f'<a href="/servers/{world.ours.server.pk}/"><strong>ours-web</strong></a>' in page


def test_a_servers_page_lists_its_runs_newest_first(world, client):
    server = world.ours.server
    newer = services.start_execution(world.ours.job, trigger=Trigger.SYSTEM)
    client.force_login(world.users["viewer"])
    assert runs_shown(client, server) == [newer.pk, world.ours.execution.pk]


def test_runs_from_before_the_server_changed_team_stay_with_that_team(world, client):
    server, old_run = world.ours.server, world.ours.execution
    server.team = world.theirs.team
    server.save()
    job = Job.objects.create(team=world.theirs.team, name="moved", script="true")
    job.servers.set([server])
    new_run = services.start_execution(job, trigger=Trigger.SYSTEM)

    client.force_login(world.users["other_team_manager"])
    assert runs_shown(client, server) == [new_run.pk]
    # The old team no longer sees the server at all; its runs stay in its executions list.
    client.force_login(world.users["manager"])
    assert client.get(f"/servers/{server.pk}/").status_code == 404
    assert f"#{old_run.pk}<" in client.get("/executions/").content.decode()


def test_the_runs_come_a_page_at_a_time(world, client):
    server = world.ours.server
    for _ in range(26):
        services.start_execution(world.ours.job, trigger=Trigger.SYSTEM)
    client.force_login(world.users["viewer"])
    first, second = runs_shown(client, server), runs_shown(client, server, page=2)
    assert len(first) == 25
    assert len(second) == 2
    assert set(first).isdisjoint(second)


def test_a_server_without_runs_says_so(world, client):
    HostRun.objects.all().delete()
    client.force_login(world.users["operator"])
    page = client.get(f"/servers/{world.ours.server.pk}/").content.decode()
    assert (
        'Nothing has run here yet: run a <a href="/jobs/">job</a> that targets this server.' in page
    )


@pytest.mark.parametrize(
    ("role", "says"),
    [
        (Role.MANAGER, 'No servers yet: <a href="/servers/new/">add your first server</a>'),
        (Role.VIEWER, "No servers yet: a manager of your team adds them."),
    ],
)
def test_an_empty_server_list_says_what_to_do_next(client, make_member, team, role, says):
    client.force_login(make_member(team, role))
    assert says in client.get("/servers/").content.decode()
    filtered = client.get("/servers/", {"name": "nothing-like-this"}).content.decode()
    assert "No servers match these filters." in filtered


def test_the_server_page_runs_a_constant_number_of_queries(client, make_member, team):
    manager = make_member(team, Role.MANAGER)
    server = Server.objects.create(team=team, name="web", host="127.0.0.1", username="u")
    job = Job.objects.create(team=team, name="j", script="true")
    job.servers.set([server])
    client.force_login(manager)
    counts = []
    for more in (2, 18):  # 2 runs, then 20
        for _ in range(more):
            services.start_execution(job, trigger=Trigger.UI, triggered_by=manager)
        with CaptureQueriesContext(connection) as queries:
            shown = runs_shown(client, server)
        assert len(shown) == HostRun.objects.count()
        counts.append([query["sql"] for query in queries.captured_queries])
    # session, user, the user's zone, team roles, server and team, tags, count, runs and
    # their executions, the user menu's memberships
    assert len(counts[0]) == len(counts[1]) == 9, "\n".join(counts[1])
