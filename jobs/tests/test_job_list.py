"""The job list shows each job's last run and a Run button; the job page names Run's targets."""

from __future__ import annotations

import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.models import Role
from accounts.tests.world import World, build_world
from executions import services
from executions.models import Execution, Status, Trigger
from jobs.models import Job
from servers.models import Server

pytestmark = pytest.mark.django_db


@pytest.fixture
def world(sshd) -> World:
    return build_world(sshd)


def row_of(page: str, job: Job) -> str:
    rows = re.findall(r"<tr>.*?</tr>", page, re.S)
    (row,) = [row for row in rows if f'href="/jobs/{job.pk}/"' in row]
    return row


def test_each_job_shows_its_newest_run(world, client):
    job = world.ours.job
    client.force_login(world.users["viewer"])
    row = row_of(client.get("/jobs/").content.decode(), job)
    assert f'href="/executions/{world.ours.execution.pk}/"' in row
    assert ">Queued<" in row

    newer = services.start_execution(job, trigger=Trigger.SYSTEM)
    Execution.objects.filter(pk=newer.pk).update(status=Status.FAILED)
    row = row_of(client.get("/jobs/").content.decode(), job)
    assert f'href="/executions/{newer.pk}/"' in row
    assert ">Failed<" in row


def test_a_job_that_changed_team_does_not_show_the_old_teams_last_run(world, client):
    job = world.ours.job
    job.team = world.theirs.team
    job.save()
    client.force_login(world.users["other_team_manager"])
    row = row_of(client.get("/jobs/").content.decode(), job)
    assert f"/executions/{world.ours.execution.pk}/" not in row
    assert "never" in row


@pytest.mark.parametrize(
    ("persona", "may_run"),
    [("viewer", False), ("operator", True), ("manager", True), ("superuser", True)],
)
def test_the_run_button_is_there_for_those_who_may_run(world, client, persona, may_run):
    client.force_login(world.users[persona])
    row = row_of(client.get("/jobs/").content.decode(), world.ours.job)
    assert (f'action="/jobs/{world.ours.job.pk}/run/"' in row) == may_run
    if may_run:  # it names no targets: the job's own, as they are when it is clicked
        assert 'name="servers"' not in row


def test_the_job_page_names_the_servers_run_targets(world, client):
    job, server = world.ours.job, world.ours.server
    client.force_login(world.users["manager"])
    page = client.get(f"/jobs/{job.pk}/").content.decode()
    targets = page[page.index('id="run-targets"') :]
    targets = targets[: targets.index("</p>")]
    assert f'<a class="tag" href="/servers/{server.pk}/">{server.name}</a>' in targets

    job.servers.clear()
    page = client.get(f"/jobs/{job.pk}/").content.decode()
    assert "none: Run has nowhere to go" in page
    assert f'href="/jobs/{job.pk}/edit/">choose the servers' in page
    assert 'disabled title="no target servers">Run<' in page


@pytest.mark.parametrize(
    ("role", "says"),
    [
        (Role.MANAGER, '<a href="/jobs/new/">write your first job</a>'),
        (Role.VIEWER, "No jobs yet: a manager of your team writes them."),
    ],
)
def test_an_empty_job_list_says_what_to_do_next(client, make_member, team, role, says):
    client.force_login(make_member(team, role))
    assert says in client.get("/jobs/").content.decode()
    filtered = client.get("/jobs/", {"name": "nothing-like-this"}).content.decode()
    assert "No jobs match this filter." in filtered


def test_the_job_list_runs_a_constant_number_of_queries(client, make_member, team):
    manager = make_member(team, Role.MANAGER)
    servers = [
        Server.objects.create(team=team, name=f"s{n}", host="127.0.0.1", username="u")
        for n in range(2)
    ]
    client.force_login(manager)
    counts = []
    for more in (2, 18):  # 2 jobs, then 20, each run twice
        for _ in range(more):
            job = Job.objects.create(team=team, name=f"j{Job.objects.count()}", script="true")
            job.servers.set(servers)
            for _ in range(2):
                services.start_execution(job, trigger=Trigger.UI, triggered_by=manager)
        with CaptureQueriesContext(connection) as queries:
            page = client.get("/jobs/").content.decode()
        assert page.count(">Queued<") == Job.objects.count()
        counts.append([query["sql"] for query in queries.captured_queries])
    # session, user, the user's zone, team roles, count, Django's own user and group
    # permissions (asked once, for "New job"), the user menu's memberships, jobs and teams,
    # target servers, target tags, each job's last run
    assert len(counts[0]) == len(counts[1]) == 12, "\n".join(counts[1])
