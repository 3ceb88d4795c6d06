"""Deleting a server: the confirmation names what it touches, and its runs stay findable."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from accounts.models import AuditEvent, Source
from accounts.tests.world import World, build_world
from executions import services
from executions.models import HostRun, Trigger
from servers.models import Server

pytestmark = [pytest.mark.django_db, pytest.mark.timeout(60)]


@pytest.fixture
def world(sshd) -> World:
    return build_world(sshd)


def logged_in(world: World, persona: str) -> Client:
    client = Client()
    client.force_login(world.users[persona])
    return client


def test_confirmation_names_the_jobs_and_the_runs_still_going_on_the_server(world):
    ours = world.ours
    # A job of another team that still names the server (say, it moved team) stays unnamed.
    world.theirs.job.servers.add(ours.server)
    client = logged_in(world, "manager")
    edit_page = client.get(f"/servers/{ours.server.pk}/edit/").content.decode()
    assert f'href="/servers/{ours.server.pk}/delete/"' in edit_page
    page = client.get(f"/servers/{ours.server.pk}/delete/").content.decode()
    assert "Delete server ours-web?" in page
    assert (
        f'1 job will no longer run on it:</strong>\n    <a href="/jobs/{ours.job.pk}/">ours-job</a>'
        in page
    )
    assert world.theirs.job.name not in page
    # The fixture's execution is queued on it: the person is told what happens to it.
    assert f'<a href="/executions/{ours.execution.pk}/">#{ours.execution.pk} ours-job</a>' in page
    assert "fails with “the server was deleted”" in page
    assert "/executions/?server_name=ours-web" in page


def test_confirmation_of_an_idle_untargeted_server_says_so(world):
    ours = world.ours
    services.cancel_execution(ours.execution, by=None, source=Source.SYSTEM)
    ours.job.servers.clear()
    page = logged_in(world, "manager").get(f"/servers/{ours.server.pk}/delete/").content.decode()
    assert "No job targets this server." in page
    assert 'id="delete-running"' not in page


def test_delete_goes_through_the_service_and_the_runs_stay_findable_by_name(world):
    ours = world.ours
    other = Server.objects.create(team=ours.team, name="ours-db", host="127.0.0.1", username="u")
    ours.job.servers.add(other)
    # A run on the other server only: the name filter must leave it out.
    services.start_execution(ours.job, trigger=Trigger.SYSTEM, servers=[other])
    client = logged_in(world, "manager")

    response = client.post(f"/servers/{ours.server.pk}/delete/")
    assert response.status_code == 302
    assert response["Location"] == reverse("server-list")
    assert not Server.objects.filter(pk=ours.server.pk).exists()
    assert list(ours.job.servers.all()) == [other]
    event = AuditEvent.objects.get(action="delete", object_type="servers.server")
    assert (event.actor, event.team, event.source, event.object_repr) == (
        world.users["manager"],
        ours.team,
        Source.UI,
        "ours-web",
    )
    run = HostRun.objects.get(execution=ours.execution)
    assert (run.server, run.server_name) == (None, "ours-web")

    listing = client.get("/executions/", {"server_name": "ours-web"})
    assert [e.pk for e in listing.context["page"]] == [ours.execution.pk]
    api = client.get("/api/v1/executions/", {"server_name": "ours-web"}).json()
    assert [e["id"] for e in api["results"]] == [ours.execution.pk]
    # The deleted server is still offered by name; another team's servers never are.
    names = client.get("/executions/").context["server_names"]
    assert names == ["ours-db", "ours-web"]


def test_another_teams_deleted_server_is_not_offered_or_found(world):
    Server.objects.filter(pk=world.theirs.server.pk).delete()
    client = logged_in(world, "manager")
    assert "theirs-web" not in client.get("/executions/").context["server_names"]
    listing = client.get("/executions/", {"server_name": "theirs-web"})
    assert list(listing.context["page"]) == []


def test_admin_confirmation_names_jobs_readably_and_warns_of_running_runs(world, client):
    ours = world.ours
    client.force_login(world.users["superuser"])
    page = client.get(reverse("admin:servers_server_delete", args=[ours.server.pk]))
    html = page.content.decode()
    assert "Job_servers object" not in html
    assert "Job-server relationship: job ours-job, server ours-web" in html
    change = reverse("admin:executions_execution_change", args=[ours.execution.pk])
    assert f'Running on this server now:\n  <a href="{change}">' in html
    assert "Its past runs stay in the history under the name “ours-web”." in html
