"""The execution page: the values a run was given, and running it again from there."""

from __future__ import annotations

import pytest
from django.test import Client

from accounts.models import Role
from executions import services
from executions.models import Execution, Status, Trigger
from jobs.models import Job, SecretVariable
from jobs.parameters import clean_definitions
from servers.models import Server, Tag

pytestmark = [pytest.mark.django_db, pytest.mark.timeout(60)]

DEFINITIONS = [
    {"name": "VERSION", "label": "Version", "required": True},
    {"name": "TOKEN", "type": "secret"},
]
TYPED_TOKEN = "typed-token-never-kept"


@pytest.fixture
def servers(team) -> list[Server]:
    # Port 9 on loopback: nothing connects anywhere (runs are queued, not run).
    return [
        Server.objects.create(team=team, name=name, host="127.0.0.1", port=9, username="u")
        for name in ("alpha", "beta")
    ]


@pytest.fixture
def job(team, servers) -> Job:
    job = Job.objects.create(
        team=team, name="deploy", script="true", parameters=clean_definitions(DEFINITIONS)
    )
    job.servers.set(servers)
    return job


def finished(job: Job, *, failed: list[str], **values) -> Execution:
    """A run of `job` that ended, with the hosts named in `failed` failed."""
    execution = services.start_execution(job, trigger=Trigger.SYSTEM, parameters=values)
    for run in execution.host_runs.all():
        run.status = Status.FAILED if run.server_name in failed else Status.SUCCEEDED
        run.save()
    execution.status = Status.FAILED if failed else Status.SUCCEEDED
    execution.save()
    return execution


def as_member(make_member, team, role: Role) -> Client:
    client = Client()
    client.force_login(make_member(team, role))
    return client


def test_the_page_shows_the_values_tags_secret_variables_and_what_it_re_ran(make_member, team, job):
    variable = SecretVariable.objects.create(team=team, name="DB_PASSWORD", value="db-pw-1234567")
    job.secret_variables.set([variable])
    Tag.named("web").servers.set(job.servers.all())
    first = services.start_execution(
        job, trigger=Trigger.UI, tags=["web"], parameters={"VERSION": "1.2", "TOKEN": TYPED_TOKEN}
    )
    again = services.rerun_execution(first, trigger=Trigger.UI, secret_parameters={"TOKEN": "x"})
    client = as_member(make_member, team, Role.VIEWER)
    page = client.get(f"/executions/{again.pk}/").content.decode()
    assert "<dt>Version <code>VERSION</code></dt><dd>1.2</dd>" in page
    assert "<dt>TOKEN</dt><dd>(secret)</dd>" in page
    assert TYPED_TOKEN not in page
    assert '<code class="tag">DB_PASSWORD</code>' in page
    assert f'<dt>Re-run of</dt><dd><a href="/executions/{first.pk}/">#{first.pk}</a>' in page
    tags = client.get(f"/executions/{first.pk}/facts/").content.decode()
    assert '<dt>Tags</dt><dd><span class="tag">web</span></dd>' in tags


@pytest.mark.parametrize(("role", "offered"), [(Role.VIEWER, False), (Role.OPERATOR, True)])
def test_run_again_is_offered_to_those_who_may_run_the_job(make_member, team, job, role, offered):
    execution = finished(job, failed=["beta"], VERSION="1", TOKEN=TYPED_TOKEN)
    page = as_member(make_member, team, role).get(f"/executions/{execution.pk}/").content.decode()
    assert ('id="rerun-form"' in page) == offered
    if offered:  # the secret is asked for again, never filled in
        assert '<input type="password" name="TOKEN" autocomplete="new-password"' in page
        assert "Run again on failed hosts" in page


def test_on_failed_hosts_is_offered_only_once_some_host_did_not_succeed(make_member, team, job):
    client = as_member(make_member, team, Role.OPERATOR)
    running = services.start_execution(job, trigger=Trigger.UI, parameters={"VERSION": "1"})
    all_good = finished(job, failed=[], VERSION="1")
    for execution in (running, all_good):
        page = client.get(f"/executions/{execution.pk}/").content.decode()
        assert "Run again</button>" in page
        assert "Run again on failed hosts" not in page
        # A run without secret values asks for none.
        assert 'type="password"' not in page


def test_run_again_starts_the_same_values_on_the_same_servers(make_member, team, job):
    execution = finished(job, failed=["beta"], VERSION="1.2", TOKEN="first")
    client = as_member(make_member, team, Role.OPERATOR)
    response = client.post(f"/executions/{execution.pk}/rerun/", {"TOKEN": TYPED_TOKEN})
    rerun = Execution.objects.exclude(pk=execution.pk).get()
    assert response.status_code == 302
    assert response["Location"] == f"/executions/{rerun.pk}/"
    assert rerun.rerun_of == execution
    assert rerun.parameters == {"VERSION": "1.2", "TOKEN": None}
    assert sorted(run.server_name for run in rerun.host_runs.all()) == ["alpha", "beta"]


def test_run_again_on_failed_hosts_runs_only_those(make_member, team, job):
    execution = finished(job, failed=["beta"], VERSION="1.2")
    client = as_member(make_member, team, Role.OPERATOR)
    response = client.post(f"/executions/{execution.pk}/rerun/", {"only_failed": "1"})
    assert response.status_code == 302
    rerun = Execution.objects.exclude(pk=execution.pk).get()
    assert [run.server_name for run in rerun.host_runs.all()] == ["beta"]


def test_a_secret_not_given_again_is_named_and_nothing_runs(make_member, team, job):
    execution = finished(job, failed=[], VERSION="1", TOKEN="first")
    client = as_member(make_member, team, Role.OPERATOR)
    response = client.post(f"/executions/{execution.pk}/rerun/", {"TOKEN": ""}, follow=True)
    assert response.redirect_chain == [(f"/executions/{execution.pk}/", 302)]
    assert "Not run again: TOKEN: A secret is not kept after a run" in response.content.decode()
    assert Execution.objects.count() == 1


def test_a_run_whose_job_was_deleted_cannot_run_again(make_member, team, job):
    execution = finished(job, failed=["beta"], VERSION="1")
    job.delete()
    client = as_member(make_member, team, Role.OPERATOR)
    assert 'id="rerun-form"' not in client.get(f"/executions/{execution.pk}/").content.decode()
    response = client.post(f"/executions/{execution.pk}/rerun/", follow=True)
    assert "Not run again: the job of this execution was deleted" in response.content.decode()
    assert Execution.objects.count() == 1


@pytest.mark.parametrize(("member_of", "status"), [("ours", 403), ("theirs", 404)])
def test_who_may_not_run_the_job_cannot_run_it_again(
    make_member, team, other_team, job, member_of, status
):
    execution = finished(job, failed=["beta"], VERSION="1")
    if member_of == "ours":
        client = as_member(make_member, team, Role.VIEWER)
    else:
        client = as_member(make_member, other_team, Role.MANAGER)
    assert client.post(f"/executions/{execution.pk}/rerun/").status_code == status
    assert Execution.objects.count() == 1
