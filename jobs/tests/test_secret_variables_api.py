"""Team secret variables in the API: managed by managers, write-only, audited without values."""

from __future__ import annotations

import pytest
from django.db import connection
from rest_framework.test import APIClient

from accounts.models import ApiToken, AuditEvent, Membership, Role
from accounts.roles import role_group
from jobs.models import SecretVariable
from jobs.parameters import clean_definitions

pytestmark = [pytest.mark.django_db, pytest.mark.timeout(60)]

VALUE = "line one 'quoted' $HOME\nline two \\ `tick`"


def api_as(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {ApiToken.issue(user, 'test')[1]}")
    return client


@pytest.fixture
def variable(team) -> SecretVariable:
    return SecretVariable.objects.create(team=team, name="DB_PASSWORD", value=VALUE)


def test_a_manager_creates_a_secret_variable_that_is_never_shown_again(make_member, team):
    api = api_as(make_member(team, Role.MANAGER))
    response = api.post(
        "/api/v1/secret-variables/",
        {"team": team.pk, "name": "API_TOKEN", "value": VALUE, "description": "for deploys"},
        format="json",
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    assert "value" not in body
    assert body["has_value"] is True
    assert body["name"] == "API_TOKEN"
    listed = api.get("/api/v1/secret-variables/").json()["results"]
    assert [v["name"] for v in listed] == ["API_TOKEN"]
    assert "value" not in listed[0]
    assert SecretVariable.objects.get(name="API_TOKEN").value == VALUE
    with connection.cursor() as cursor:
        cursor.execute("SELECT value FROM jobs_secretvariable")
        (stored,) = cursor.fetchone()
    assert "line one" not in stored


def test_changes_are_audited_by_field_never_by_value(make_member, team, variable):
    api = api_as(make_member(team, Role.MANAGER))
    response = api.patch(
        f"/api/v1/secret-variables/{variable.pk}/", {"value": "new-value-9"}, format="json"
    )
    assert response.status_code == 200
    assert SecretVariable.objects.get(pk=variable.pk).value == "new-value-9"
    event = AuditEvent.objects.get(action="change", object_type="jobs.secretvariable")
    assert event.details == {"fields": ["value"]}
    assert "new-value-9" not in str(event.details) + event.object_repr
    # Changing the description keeps the value.
    api.patch(f"/api/v1/secret-variables/{variable.pk}/", {"description": "x"}, format="json")
    assert SecretVariable.objects.get(pk=variable.pk).value == "new-value-9"
    assert api.delete(f"/api/v1/secret-variables/{variable.pk}/").status_code == 204
    assert AuditEvent.objects.filter(action="delete", object_id=str(variable.pk)).exists()


@pytest.mark.parametrize("role", [Role.VIEWER, Role.OPERATOR])
def test_only_managers_see_or_manage_secret_variables(make_member, team, variable, role):
    api = api_as(make_member(team, role))
    assert api.get("/api/v1/secret-variables/").json()["results"] == []
    assert api.get(f"/api/v1/secret-variables/{variable.pk}/").status_code == 404
    created = api.post(
        "/api/v1/secret-variables/",
        {"team": team.pk, "name": "X_TOKEN", "value": "abcd"},
        format="json",
    )
    assert created.status_code in (400, 403)
    assert not SecretVariable.objects.filter(name="X_TOKEN").exists()


def test_another_teams_manager_does_not_see_them(make_member, other_team, variable):
    api = api_as(make_member(other_team, Role.MANAGER))
    assert api.get(f"/api/v1/secret-variables/{variable.pk}/").status_code == 404
    assert api.delete(f"/api/v1/secret-variables/{variable.pk}/").status_code == 404


@pytest.mark.parametrize("name", ["PATH", "lower", "LD_PRELOAD", "TSUBAME_JOB"])
def test_names_follow_the_parameter_rule(make_member, team, name):
    response = api_as(make_member(team, Role.MANAGER)).post(
        "/api/v1/secret-variables/", {"team": team.pk, "name": name, "value": "x"}, format="json"
    )
    assert response.status_code == 400
    assert response.json()["errors"]["name"]


def test_a_secret_variable_stays_in_its_team(make_member, team, other_team, variable):
    manager = make_member(team, Role.MANAGER)
    Membership.objects.create(team=other_team, user=manager, role=role_group(Role.MANAGER))
    response = api_as(manager).patch(
        f"/api/v1/secret-variables/{variable.pk}/", {"team": other_team.pk}, format="json"
    )
    assert response.status_code == 400
    assert SecretVariable.objects.get(pk=variable.pk).team == team


def test_a_secret_variable_is_at_most_16_kib(make_member, team):
    response = api_as(make_member(team, Role.MANAGER)).post(
        "/api/v1/secret-variables/",
        {"team": team.pk, "name": "BIG", "value": "🔒" * 5000},
        format="json",
    )
    assert response.status_code == 400
    assert "A secret can be at most 16384 bytes" in response.json()["errors"]["value"][0]


def test_renaming_a_secret_variable_onto_a_jobs_parameter_is_refused(
    make_member, team, variable, make_job
):
    job = make_job("true", [], team=team)
    job.parameters = clean_definitions([{"name": "N"}])
    job.save()
    job.secret_variables.add(variable)
    response = api_as(make_member(team, Role.MANAGER)).patch(
        f"/api/v1/secret-variables/{variable.pk}/", {"name": "N"}, format="json"
    )
    assert response.status_code == 400
    assert "have a parameter named N" in response.json()["errors"]["name"][0]
    assert SecretVariable.objects.get(pk=variable.pk).name == "DB_PASSWORD"
