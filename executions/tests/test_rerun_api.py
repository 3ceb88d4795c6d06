"""Run again: the same job with the same values on the same servers, or only the failed ones."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from accounts.models import ApiToken, AuditEvent, Role
from executions import services
from executions.models import Execution, HostRun, Status, Trigger
from jobs.parameters import clean_definitions

pytestmark = [pytest.mark.django_db, pytest.mark.timeout(60)]


def api_as(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {ApiToken.issue(user, 'test')[1]}")
    return client


@pytest.fixture
def operator(make_member, team):
    return make_member(team, Role.OPERATOR)


@pytest.fixture
def finished(make_server, make_job) -> Execution:
    """A run on three servers with a secret: web-1 succeeded, web-2 failed, web-3 timed out."""
    servers = [make_server(name=f"web-{n}") for n in (1, 2, 3)]
    job = make_job("true", servers)
    job.parameters = clean_definitions(
        [{"name": "VERSION"}, {"name": "TOKEN", "type": "secret"}, {"name": "N", "type": "integer"}]
    )
    job.save()
    execution = services.start_execution(
        job,
        trigger=Trigger.API,
        parameters={"VERSION": "1.2", "TOKEN": "hunter2!", "N": 3},
    )
    outcomes = {"web-1": Status.SUCCEEDED, "web-2": Status.FAILED, "web-3": Status.TIMED_OUT}
    for run in execution.host_runs.all():
        HostRun.objects.filter(pk=run.pk).update(status=outcomes[run.server_name])
    Execution.objects.filter(pk=execution.pk).update(status=Status.RUNNING)
    services.finish_execution(execution.pk)
    return Execution.objects.get(pk=execution.pk)


def rerun(user, execution: Execution, body: dict):
    return api_as(user).post(f"/api/v1/executions/{execution.pk}/rerun/", body, format="json")


def test_secret_parameters_must_be_given_again(operator, finished) -> None:
    response = rerun(operator, finished, {})
    assert response.status_code == 400
    assert response.json()["errors"]["parameters"] == {
        "TOKEN": ["A secret is not kept after a run: give its value again."]
    }
    assert Execution.objects.count() == 1


def test_run_again_uses_the_same_values_and_servers(operator, finished) -> None:
    response = rerun(operator, finished, {"parameters": {"TOKEN": "hunter3!"}})
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["parameters"] == {"VERSION": "1.2", "TOKEN": None, "N": 3}
    assert [r["server_name"] for r in body["host_runs"]] == ["web-1", "web-2", "web-3"]
    assert body["rerun_of"] == finished.pk
    again = Execution.objects.get(pk=body["id"])
    assert again.secret_parameters == '{"TOKEN": "hunter3!"}'
    assert again.triggered_by == operator
    event = AuditEvent.objects.get(action="run", object_id=str(again.pk))
    assert event.details["rerun_of"] == finished.pk


def test_run_again_only_on_the_hosts_that_did_not_succeed(operator, finished) -> None:
    response = rerun(operator, finished, {"only_failed": True, "parameters": {"TOKEN": "x" * 8}})
    assert response.status_code == 201, response.json()
    assert [r["server_name"] for r in response.json()["host_runs"]] == ["web-2", "web-3"]


def test_nothing_to_run_again_when_every_host_succeeded(operator, finished) -> None:
    finished.host_runs.update(status=Status.SUCCEEDED)
    response = rerun(operator, finished, {"only_failed": True, "parameters": {"TOKEN": "x" * 8}})
    assert response.status_code == 400
    assert "every host of this execution succeeded" in str(response.json())


def test_a_value_that_no_longer_fits_the_job_is_refused(operator, finished) -> None:
    job = finished.job
    job.parameters = clean_definitions(
        [{"name": "VERSION", "pattern": "v.*"}, {"name": "TOKEN", "type": "secret"}]
    )
    job.save()
    response = rerun(operator, finished, {"parameters": {"TOKEN": "x" * 8}})
    assert response.status_code == 400
    assert response.json()["errors"]["parameters"] == {
        "N": ["This job has no such parameter."],
        "VERSION": ["The value must match the pattern v.*."],
    }


def test_a_viewer_cannot_run_again(make_member, team, finished) -> None:
    response = rerun(make_member(team, Role.VIEWER), finished, {"parameters": {"TOKEN": "abcd"}})
    assert response.status_code == 403
    assert Execution.objects.count() == 1


def test_another_team_does_not_see_the_execution(make_member, other_team, finished) -> None:
    response = rerun(make_member(other_team, Role.MANAGER), finished, {})
    assert response.status_code == 404


def test_deleted_servers_are_left_out_and_a_deleted_job_is_a_clear_400(operator, finished) -> None:
    finished.host_runs.get(server_name="web-2").server.delete()
    response = rerun(operator, finished, {"only_failed": True, "parameters": {"TOKEN": "abcd"}})
    assert [r["server_name"] for r in response.json()["host_runs"]] == ["web-3"]
    finished.job.delete()
    response = rerun(operator, finished, {"parameters": {"TOKEN": "abcd"}})
    assert response.status_code == 400
    assert "the job of this execution was deleted" in str(response.json())


def test_only_secret_parameters_are_given_again(operator, finished) -> None:
    response = rerun(operator, finished, {"parameters": {"TOKEN": "abcd", "VERSION": "9"}})
    assert response.status_code == 400
    assert response.json()["errors"]["parameters"] == {
        "VERSION": ["Only secret parameters are given again."]
    }
    assert Execution.objects.count() == 1
