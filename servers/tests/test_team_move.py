"""A server moved to another team stops being a target of its old team's jobs."""

from __future__ import annotations

import pytest
from django.urls import reverse

from accounts.models import AuditEvent, Role
from executions import services
from executions.models import Trigger
from jobs.models import Job
from servers.models import Server

pytestmark = pytest.mark.django_db


def server(team, name: str) -> Server:
    return Server.objects.create(team=team, name=name, host=f"{name}.example.test", username="u")


def form(server: Server, team) -> dict[str, object]:
    fields = ["name", "host", "port", "username", "auth_method", "description"]
    return {name: getattr(server, name) for name in fields} | {"team": team.pk, "tags": ""}


@pytest.fixture
def job(team) -> Job:
    job = Job.objects.create(team=team, name="deploy", script="true")
    job.servers.set([server(team, "moving"), server(team, "staying")])
    return job


@pytest.mark.parametrize("persona", ["superuser", "manager of both"])
def test_moving_a_server_removes_it_from_the_old_teams_jobs(
    client, superuser, make_member, team, other_team, job, persona
):
    if persona == "superuser":
        user = superuser
    else:
        user = make_member(team, Role.MANAGER)
        user.memberships.create(team=other_team, role=user.memberships.get().role)
    client.force_login(user)
    moving = Server.objects.get(name="moving")
    theirs = Job.objects.create(team=other_team, name="theirs", script="true")
    theirs.servers.set([server(other_team, "their-own")])

    edit = reverse("server-edit", args=[moving.pk])
    # Followed, so that the page after it shows "Saved moving." and the job page does not.
    saved = client.post(edit, form(moving, other_team), follow=True)
    assert saved.redirect_chain == [(reverse("server-list"), 302)]

    moving.refresh_from_db()
    assert moving.team == other_team
    assert [s.name for s in job.servers.all()] == ["staying"]
    assert [s.name for s in theirs.servers.all()] == ["their-own"]  # not added anywhere
    change = AuditEvent.objects.get(object_type="jobs.job", action="change")
    assert (change.object_id, change.team_id, change.actor) == (str(job.pk), team.pk, user)
    assert change.details == {"fields": ["servers"], "removed": ["moving"]}
    # The job runs again on its own team's servers instead of refusing a foreign one.
    execution = services.start_execution(job, trigger=Trigger.SYSTEM)
    assert [run.server_name for run in execution.host_runs.all()] == ["staying"]
    assert b"moving" not in client.get(reverse("job-detail", args=[job.pk])).content


def test_saving_a_server_without_moving_it_leaves_its_jobs(client, superuser, team, job):
    client.force_login(superuser)
    staying = Server.objects.get(name="staying")
    changed = form(staying, team) | {"description": "still here"}
    assert client.post(reverse("server-edit", args=[staying.pk]), changed).status_code == 302
    assert [s.name for s in job.servers.all()] == ["moving", "staying"]
    assert not AuditEvent.objects.filter(object_type="jobs.job").exists()


@pytest.mark.parametrize("url", ["job-detail", "job-list"])
def test_job_pages_name_only_visible_targets(client, make_member, team, other_team, job, url):
    # However a job came to target another team's server, its team's pages do not name it.
    job.servers.add(server(other_team, "payroll-db"))
    client.force_login(make_member(team, Role.OPERATOR))
    page = client.get(reverse(url, args=[job.pk] if url == "job-detail" else []))
    assert page.status_code == 200
    assert b"payroll-db" not in page.content
    foreign = Server.objects.get(name="payroll-db")
    assert f'name="servers" value="{foreign.pk}"'.encode() not in page.content
