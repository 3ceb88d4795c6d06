"""A job runs only on servers of its own team, whoever asks and however they ask."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from accounts.models import ApiToken, AuditEvent, Role
from executions import services
from executions.models import Execution, Trigger

pytestmark = [pytest.mark.django_db, pytest.mark.timeout(60)]


def api_as(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {ApiToken.issue(user, 'test')[1]}")
    return client


@pytest.fixture
def servers(make_server, other_team):
    return make_server(name="ours"), make_server(name="theirs", team=other_team)


@pytest.mark.parametrize("persona", ["operator", "superuser"])
def test_run_refuses_another_teams_server_even_when_named(
    make_member, superuser, team, servers, make_job, persona
):
    ours, theirs = servers
    job = make_job("true", [ours])
    user = superuser if persona == "superuser" else make_member(team, Role.OPERATOR)
    response = api_as(user).post(
        f"/api/v1/jobs/{job.pk}/run/", {"servers": [theirs.pk]}, format="json"
    )
    assert response.status_code == 400
    body = response.json()
    assert body["detail"] == "The request is not valid."
    # The same answer as for an id that does not exist: another team's server is not revealed.
    assert body["errors"]["servers"] == [f'Invalid pk "{theirs.pk}" - object does not exist.']
    mixed = api_as(user).post(
        f"/api/v1/jobs/{job.pk}/run/", {"servers": [ours.pk, theirs.pk]}, format="json"
    )
    assert mixed.status_code == 400
    assert not Execution.objects.exists()
    assert not AuditEvent.objects.filter(action="run").exists()


def test_run_on_a_named_subset_of_own_servers(make_member, team, make_server, make_job):
    first, second = make_server(name="first"), make_server(name="second")
    job = make_job("true", [first, second])
    response = api_as(make_member(team, Role.OPERATOR)).post(
        f"/api/v1/jobs/{job.pk}/run/", {"servers": [second.pk]}, format="json"
    )
    assert response.status_code == 201
    assert [run["server"] for run in response.json()["host_runs"]] == [second.pk]


def test_start_execution_refuses_another_teams_server(servers, make_job):
    ours, theirs = servers
    job = make_job("true", [ours])
    with pytest.raises(services.ExecutionError, match="not servers of team ops: theirs"):
        services.start_execution(job, trigger=Trigger.API, servers=[theirs])
    with pytest.raises(services.ExecutionError, match="not servers of team ops: theirs"):
        services.start_execution(job, trigger=Trigger.API, servers=[ours, theirs])
    assert not Execution.objects.exists()


def test_start_execution_refuses_stale_default_targets(servers, make_job):
    # A job whose saved targets include another team's server (written around the forms).
    ours, theirs = servers
    job = make_job("true", [ours, theirs])
    with pytest.raises(services.ExecutionError, match="theirs"):
        services.start_execution(job, trigger=Trigger.SCHEDULE)
    assert not Execution.objects.exists()


def test_job_api_refuses_targets_of_another_team(superuser, team, servers):
    ours, theirs = servers
    client = api_as(superuser)
    created = client.post(
        "/api/v1/jobs/",
        {"team": team.pk, "name": "j", "script": "true", "servers": [ours.pk, theirs.pk]},
        format="json",
    )
    assert created.status_code == 400
    assert created.json()["errors"]["servers"] == ["not servers of team ops: theirs"]

    job = client.post(
        "/api/v1/jobs/",
        {"team": team.pk, "name": "j", "script": "true", "servers": [ours.pk]},
        format="json",
    ).json()
    # Moving the job to the other team would leave its targets behind: refused.
    moved = client.patch(f"/api/v1/jobs/{job['id']}/", {"team": theirs.team_id}, format="json")
    assert moved.status_code == 400
    assert moved.json()["errors"]["servers"] == ["not servers of team elsewhere: ours"]
    added = client.patch(f"/api/v1/jobs/{job['id']}/", {"servers": [theirs.pk]}, format="json")
    assert added.status_code == 400


def test_manager_cannot_name_a_server_it_cannot_see(make_member, team, servers):
    _ours, theirs = servers
    response = api_as(make_member(team, Role.MANAGER)).post(
        "/api/v1/jobs/",
        {"team": team.pk, "name": "j", "script": "true", "servers": [theirs.pk]},
        format="json",
    )
    assert response.status_code == 400
    assert response.json()["errors"]["servers"] == [
        f'Invalid pk "{theirs.pk}" - object does not exist.'
    ]
