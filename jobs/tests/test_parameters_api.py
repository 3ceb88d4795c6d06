"""Parameters, tag targets and secret variables through the REST API."""

from __future__ import annotations

import pytest
from django.db import connection
from rest_framework.test import APIClient

from accounts.models import ApiToken, AuditEvent, Role
from executions import services
from executions.models import Execution, Status
from jobs.models import SecretVariable
from jobs.parameters import clean_definitions
from servers.models import Tag

pytestmark = [pytest.mark.django_db, pytest.mark.timeout(60)]

DEFINITIONS = [
    {"name": "VERSION", "required": True, "pattern": r"[0-9.]+"},
    {"name": "ENVIRONMENT", "type": "choice", "choices": ["dev", "prod"], "default": "dev"},
    {"name": "DRY_RUN", "type": "boolean", "default": True},
    {"name": "REPLICAS", "type": "integer", "min": 1, "max": 9},
    {"name": "TOKEN", "type": "secret"},
]


def api_as(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {ApiToken.issue(user, 'test')[1]}")
    return client


@pytest.fixture
def manager(make_member, team):
    return make_member(team, Role.MANAGER)


@pytest.fixture
def operator(make_member, team):
    return make_member(team, Role.OPERATOR)


@pytest.fixture
def job(make_server, make_job):
    job = make_job("true", [make_server(name="web-1")])
    job.parameters = clean_definitions(DEFINITIONS)
    job.save()
    return job


def test_a_job_is_created_with_parameters_stored_in_full(manager, team) -> None:
    response = api_as(manager).post(
        "/api/v1/jobs/",
        {"team": team.pk, "name": "deploy", "script": "true", "parameters": DEFINITIONS},
        format="json",
    )
    assert response.status_code == 201, response.json()
    stored = response.json()["parameters"]
    assert [p["name"] for p in stored] == [p["name"] for p in DEFINITIONS]
    assert stored[0] | {"label": "", "help": ""} == stored[0]
    assert stored[3]["min"] == 1
    assert stored[3]["type"] == "integer"


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        ([{"name": "PATH"}], "Parameter PATH: PATH is a name the shell or the system relies on"),
        ([{"name": "LD_PRELOAD"}], "Parameter LD_PRELOAD: LD_PRELOAD is a name the shell"),
        ([{"name": "A"}, {"name": "A"}], "Parameter A: the name is used twice."),
        ([{"name": "A", "type": "secret", "default": "x"}], "cannot have a default"),
        ({"name": "A"}, "Parameters must be a list"),
    ],
)
def test_bad_definitions_are_a_400_naming_the_parameter(manager, job, parameters, message):
    response = api_as(manager).patch(
        f"/api/v1/jobs/{job.pk}/", {"parameters": parameters}, format="json"
    )
    assert response.status_code == 400
    assert message in response.json()["errors"]["parameters"][0]


def test_run_with_typed_values_records_them_and_hides_the_secret(operator, job) -> None:
    response = api_as(operator).post(
        f"/api/v1/jobs/{job.pk}/run/",
        {"parameters": {"VERSION": "1.2", "REPLICAS": 3, "DRY_RUN": False, "TOKEN": "hunter2!"}},
        format="json",
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["parameters"] == {
        "VERSION": "1.2",
        "ENVIRONMENT": "dev",
        "DRY_RUN": False,
        "REPLICAS": 3,
        "TOKEN": None,
    }
    detail = api_as(operator).get(f"/api/v1/executions/{body['id']}/").json()
    assert detail["parameters"]["TOKEN"] is None
    assert "hunter2!" not in str(detail)
    # At rest the secret is encrypted, and only in its own column.
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT parameters, secret_parameters FROM executions_execution WHERE id = %s",
            [body["id"]],
        )
        public, secret = cursor.fetchone()
    assert "hunter2!" not in str(public)
    assert "hunter2!" not in secret
    assert Execution.objects.get(pk=body["id"]).secret_parameters == '{"TOKEN": "hunter2!"}'
    event = AuditEvent.objects.get(action="run", object_id=str(body["id"]))
    assert event.details["parameters"] == ["DRY_RUN", "ENVIRONMENT", "REPLICAS", "TOKEN", "VERSION"]


@pytest.mark.parametrize(
    ("values", "errors"),
    [
        ({}, {"VERSION": ["A value is required."]}),
        ({"VERSION": "x"}, {"VERSION": ["The value must match the pattern [0-9.]+."]}),
        ({"VERSION": "1", "REPLICAS": "3"}, {"REPLICAS": ["The value must be a number."]}),
        ({"VERSION": "1", "REPLICAS": 10}, {"REPLICAS": ["The value must be at most 9."]}),
        ({"VERSION": "1", "DRY_RUN": "no"}, {"DRY_RUN": ["The value must be true or false."]}),
        (
            {"VERSION": "1", "ENVIRONMENT": "qa"},
            {"ENVIRONMENT": ["'qa' is not one of the choices."]},
        ),
        ({"VERSION": "1", "HOST": "x"}, {"HOST": ["This job has no such parameter."]}),
        ({"VERSION": "1\x00"}, {"VERSION": ["The value must not contain null characters."]}),
    ],
)
def test_a_bad_value_is_a_400_naming_the_parameter_and_nothing_starts(
    operator, job, values, errors
) -> None:
    response = api_as(operator).post(
        f"/api/v1/jobs/{job.pk}/run/", {"parameters": values}, format="json"
    )
    assert response.status_code == 400
    assert response.json()["errors"]["parameters"] == errors
    assert not Execution.objects.exists()
    assert not AuditEvent.objects.filter(action="run").exists()


def test_secret_parameters_are_erased_when_the_run_finishes(job) -> None:
    execution = services.start_execution(
        job, trigger=services.Trigger.API, parameters={"VERSION": "1", "TOKEN": "hunter2!"}
    )
    assert Execution.objects.get(pk=execution.pk).secret_parameters
    assert services.cancel_execution(execution)
    finished = Execution.objects.get(pk=execution.pk)
    assert finished.status == Status.CANCELLED
    assert finished.secret_parameters is None
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT secret_parameters FROM executions_execution WHERE id = %s", [execution.pk]
        )
        assert cursor.fetchone() == (None,)


def test_tags_target_every_tagged_server_of_the_team_when_the_run_starts(
    operator, job, make_server, other_team
) -> None:
    web = Tag.objects.create(name="web")
    for server in (make_server(name="web-2"), make_server(name="web-3")):
        server.tags.add(web)
    make_server(name="db-1")
    make_server(name="theirs-web", team=other_team).tags.add(web)
    job.target_tags.set([web])
    response = api_as(operator).post(
        f"/api/v1/jobs/{job.pk}/run/", {"parameters": {"VERSION": "1"}}, format="json"
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    # The job's default servers and every server of its own team tagged web, as they are now.
    assert [run["server_name"] for run in body["host_runs"]] == ["web-1", "web-2", "web-3"]
    assert body["target_tags"] == ["web"]
    # A run that names tags (and no servers) runs on exactly those.
    response = api_as(operator).post(
        f"/api/v1/jobs/{job.pk}/run/",
        {"tags": ["web"], "parameters": {"VERSION": "1"}},
        format="json",
    )
    assert [run["server_name"] for run in response.json()["host_runs"]] == ["web-2", "web-3"]


def test_a_tag_no_server_of_the_team_has_is_a_clear_400(operator, job) -> None:
    response = api_as(operator).post(
        f"/api/v1/jobs/{job.pk}/run/",
        {"tags": ["nowhere"], "parameters": {"VERSION": "1"}},
        format="json",
    )
    assert response.status_code == 400
    assert (
        "no server of team ops is tagged nowhere"
        in response.json()["errors"]["non_field_errors"][0]
    )


def test_a_job_lists_its_secret_variables_by_name(manager, job, team, other_team) -> None:
    SecretVariable.objects.create(team=team, name="DB_PASSWORD", value="pw-1234")
    SecretVariable.objects.create(team=other_team, name="THEIR_KEY", value="k-1234")
    api = api_as(manager)
    response = api.patch(
        f"/api/v1/jobs/{job.pk}/", {"secret_variables": ["DB_PASSWORD"]}, format="json"
    )
    assert response.status_code == 200, response.json()
    assert response.json()["secret_variables"] == ["DB_PASSWORD"]
    refused = api.patch(
        f"/api/v1/jobs/{job.pk}/", {"secret_variables": ["THEIR_KEY"]}, format="json"
    )
    assert refused.status_code == 400
    assert refused.json()["errors"]["secret_variables"] == [
        "team ops has no secret variable THEIR_KEY"
    ]


def test_a_secret_variable_and_a_parameter_cannot_share_a_name(manager, job, team) -> None:
    SecretVariable.objects.create(team=team, name="TOKEN", value="pw-1234")
    response = api_as(manager).patch(
        f"/api/v1/jobs/{job.pk}/", {"secret_variables": ["TOKEN"]}, format="json"
    )
    assert response.status_code == 400
    assert "TOKEN: both a parameter and a secret variable" in str(response.json())


def test_an_execution_records_the_secret_variables_it_receives(operator, job, team) -> None:
    job.secret_variables.add(SecretVariable.objects.create(team=team, name="DB_PW", value="x" * 8))
    response = api_as(operator).post(
        f"/api/v1/jobs/{job.pk}/run/", {"parameters": {"VERSION": "1"}}, format="json"
    )
    assert response.json()["secret_variables"] == ["DB_PW"]


def test_a_lone_surrogate_is_a_400_not_a_crash(manager, operator, job) -> None:
    body = '{"parameters": {"VERSION": "1", "TOKEN": "abc\\ud800def"}}'
    response = api_as(operator).post(
        f"/api/v1/jobs/{job.pk}/run/", body, content_type="application/json"
    )
    assert response.status_code == 400
    assert response.json()["errors"]["parameters"] == {
        "TOKEN": ["The value must be valid Unicode text."]
    }
    body = '{"parameters": [{"name": "A", "type": "choice", "choices": ["\\ud800"]}]}'
    response = api_as(manager).patch(
        f"/api/v1/jobs/{job.pk}/", body, content_type="application/json"
    )
    assert response.status_code == 400
    assert not Execution.objects.exists()
