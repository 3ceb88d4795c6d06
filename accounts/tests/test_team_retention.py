"""A team's retention settings: changed in the API and the admin by whoever may change the
team (superusers, by default), with an audit row; refused to everyone else."""

from __future__ import annotations

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from accounts.models import AuditEvent, Role, Source, Team

pytestmark = pytest.mark.django_db

RETENTION = {
    "output_retention_days": 7,
    "execution_retention_days": 30,
    "failed_execution_retention_days": 90,
    "keep_last_runs": 5,
}


def api_as(user: object) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def retention_of(team: Team) -> dict[str, object]:
    team.refresh_from_db()
    return {name: getattr(team, name) for name in RETENTION}


def test_a_new_team_keeps_everything(team: Team) -> None:
    assert retention_of(team) == {
        "output_retention_days": None,
        "execution_retention_days": None,
        "failed_execution_retention_days": None,
        "keep_last_runs": 10,
    }


def test_superuser_changes_retention_through_the_api_with_an_audit_row(superuser, team) -> None:
    url = f"/api/v1/teams/{team.pk}/"
    response = api_as(superuser).patch(url, RETENTION, format="json")
    assert response.status_code == 200, response.json()
    assert {name: response.json()[name] for name in RETENTION} == RETENTION
    assert retention_of(team) == RETENTION
    event = AuditEvent.objects.get(object_type="accounts.team")
    assert (event.action, event.actor, event.team, event.source) == (
        "change",
        superuser,
        team,
        Source.API,
    )
    assert event.details == {"fields": sorted(RETENTION)}

    # Back to "for ever"; only what changed is recorded.
    response = api_as(superuser).patch(url, {"output_retention_days": None}, format="json")
    assert response.status_code == 200
    assert retention_of(team)["output_retention_days"] is None
    latest = AuditEvent.objects.filter(object_type="accounts.team").latest("id")
    assert latest.details == {"fields": ["output_retention_days"]}


@pytest.mark.parametrize("role", [Role.VIEWER, Role.OPERATOR, Role.MANAGER])
def test_members_see_retention_but_cannot_change_it(make_member, team, role) -> None:
    client = api_as(make_member(team, role))
    url = f"/api/v1/teams/{team.pk}/"
    assert client.get(url).json()["keep_last_runs"] == 10
    response = client.patch(url, {"output_retention_days": 1}, format="json")
    assert response.status_code == 403
    assert retention_of(team)["output_retention_days"] is None
    assert not AuditEvent.objects.filter(object_type="accounts.team").exists()


def test_another_teams_retention_does_not_exist_for_a_manager(make_member, team, other_team):
    client = api_as(make_member(other_team, Role.MANAGER))
    response = client.patch(f"/api/v1/teams/{team.pk}/", {"keep_last_runs": 0}, format="json")
    assert response.status_code == 404


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"execution_retention_days": 30, "failed_execution_retention_days": 10}, "failed"),
        ({"failed_execution_retention_days": 10}, "failed"),  # the others: for ever
        ({"output_retention_days": 0}, "output_retention_days"),
        ({"keep_last_runs": -1}, "keep_last_runs"),
    ],
)
def test_retention_that_would_not_keep_failed_runs_longer_is_refused(
    superuser, team, change, field
) -> None:
    response = api_as(superuser).patch(f"/api/v1/teams/{team.pk}/", change, format="json")
    assert response.status_code == 400
    field = "failed_execution_retention_days" if field == "failed" else field
    assert field in response.json()["errors"]
    assert retention_of(team)["keep_last_runs"] == 10
    assert not AuditEvent.objects.filter(object_type="accounts.team").exists()


def team_form(team: Team, **retention: object) -> dict[str, object]:
    data: dict[str, object] = {"name": team.name, "description": team.description}
    data |= {name: "" if value is None else value for name, value in retention.items()}
    data |= {
        "memberships-TOTAL_FORMS": 0,
        "memberships-INITIAL_FORMS": 0,
        "memberships-MIN_NUM_FORMS": 0,
        "memberships-MAX_NUM_FORMS": 1000,
    }
    return data


def test_superuser_changes_retention_in_the_admin_with_an_audit_row(client, superuser, team):
    client.force_login(superuser)
    url = reverse("admin:accounts_team_change", args=[team.pk])
    response = client.post(url, team_form(team, **RETENTION))
    assert response.status_code == 302, response.context["adminform"].form.errors
    assert retention_of(team) == RETENTION
    event = AuditEvent.objects.get(object_type="accounts.team")
    assert (event.action, event.actor, event.source) == ("change", superuser, Source.ADMIN)
    assert event.details == {"fields": sorted(RETENTION)}

    shorter = RETENTION | {"failed_execution_retention_days": 10}
    response = client.post(url, team_form(team, **shorter))
    assert response.status_code == 200
    assert "failed_execution_retention_days" in response.context["adminform"].form.errors
    assert retention_of(team) == RETENTION


@pytest.mark.parametrize("role", [Role.VIEWER, Role.MANAGER])
def test_members_cannot_change_retention_in_the_admin(client, make_member, team, role) -> None:
    client.force_login(make_member(team, role))
    url = reverse("admin:accounts_team_change", args=[team.pk])
    page = client.get(url)
    assert page.status_code == 200
    assert "output_retention_days" in page.context["adminform"].readonly_fields
    response = client.post(url, team_form(team, **RETENTION))
    assert response.status_code == (302 if role == Role.MANAGER else 403)
    assert retention_of(team)["output_retention_days"] is None
    assert not AuditEvent.objects.filter(object_type="accounts.team").exists()
