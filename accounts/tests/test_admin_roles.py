"""Roles in the admin: memberships on the user page, role groups kept apart, team staff's index."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import Group, User
from django.urls import reverse

from accounts.models import AuditEvent, Membership, Role, Source, Team
from accounts.roles import role_group

pytestmark = pytest.mark.django_db


def index_models(client) -> dict[str, set[str]]:
    index = client.get(reverse("admin:index"))
    assert index.status_code == 200
    return {
        app["app_label"]: {model["object_name"] for model in app["models"]}
        for app in index.context["app_list"]
    }


def test_team_manager_sees_the_models_of_their_role_on_the_admin_index(client, make_member, team):
    client.force_login(make_member(team, Role.MANAGER))
    assert index_models(client) == {
        "accounts": {"Team", "AuditEvent", "ApiToken"},
        "servers": {"Server"},
        "jobs": {"Job", "SecretVariable", "Schedule", "Webhook", "WebhookDelivery"},
        "executions": {"Execution", "HostRun", "LogChunk"},
        "notifications": {"NotificationChannel", "NotificationRule", "Delivery"},
    }


def test_team_viewer_sees_what_they_may_view_and_no_audit(client, make_member, team):
    client.force_login(make_member(team, Role.VIEWER))
    assert index_models(client) == {
        "accounts": {"Team", "ApiToken"},
        "servers": {"Server"},
        "jobs": {"Job", "Schedule"},
        "executions": {"Execution", "HostRun", "LogChunk"},
    }


def user_form(client, user: User, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The user page's form as Django rendered it, with `rows` as its memberships inline."""
    page = client.get(reverse("admin:auth_user_change", args=[user.pk]))
    assert page.status_code == 200
    form = page.context["adminform"].form
    data: dict[str, Any] = {}
    for name, field in form.fields.items():
        if field.disabled:
            continue
        value = form.initial.get(name, field.initial)
        if name in ("last_login", "date_joined"):
            data[f"{name}_0"], data[f"{name}_1"] = (
                (f"{value:%Y-%m-%d}", f"{value:%H:%M:%S}") if value else ("", "")
            )
        elif name in ("groups", "user_permissions"):
            data[name] = [item.pk for item in value] if value else []
        elif value not in (None, False):
            data[name] = value
    data |= {
        "memberships-TOTAL_FORMS": len(rows),
        "memberships-INITIAL_FORMS": sum(1 for row in rows if "id" in row),
        "memberships-MIN_NUM_FORMS": 0,
        "memberships-MAX_NUM_FORMS": 1000,
    }
    for index, row in enumerate(rows):
        data |= {f"memberships-{index}-{key}": value for key, value in row.items()}
        data[f"memberships-{index}-user"] = user.pk
    return data


def test_user_page_shows_and_edits_team_memberships_with_audit(
    admin_client, admin_user, django_user_model, team
):
    person = django_user_model.objects.create_user("person")
    elsewhere = Team.objects.create(name="elsewhere")
    existing = Membership.objects.create(team=team, user=person, role=role_group(Role.VIEWER))
    url = reverse("admin:auth_user_change", args=[person.pk])
    page = admin_client.get(url).content.decode()
    assert "Team memberships" in page
    assert f'<option value="{team.pk}" selected>ops</option>' in page

    rows = [
        {"id": existing.pk, "team": team.pk, "role": role_group(Role.MANAGER).pk},
        {"team": elsewhere.pk, "role": role_group(Role.OPERATOR).pk},
    ]
    response = admin_client.post(url, user_form(admin_client, person, rows))
    assert response.status_code == 302, response.context["inline_admin_formsets"][0].formset.errors

    roles = {m.team.name: m.role.name for m in Membership.objects.filter(user=person)}
    assert roles == {"ops": "Team manager", "elsewhere": "Team operator"}
    events = AuditEvent.objects.filter(object_type="accounts.membership").order_by("id")
    assert {e.actor for e in events} == {admin_user}
    assert {e.source for e in events} == {Source.ADMIN}
    assert [(e.action, e.team, e.details) for e in events] == [
        ("change_member", team, {"user": "person", "role": "Team manager"}),
        ("add_member", elsewhere, {"user": "person", "role": "Team operator"}),
    ]


def test_moving_a_membership_to_another_team_on_the_user_page_leaves_the_first(
    admin_client, django_user_model, team
):
    person = django_user_model.objects.create_user("person")
    elsewhere = Team.objects.create(name="elsewhere")
    existing = Membership.objects.create(team=team, user=person, role=role_group(Role.VIEWER))
    url = reverse("admin:auth_user_change", args=[person.pk])
    rows = [{"id": existing.pk, "team": elsewhere.pk, "role": role_group(Role.VIEWER).pk}]
    response = admin_client.post(url, user_form(admin_client, person, rows))
    assert response.status_code == 302
    assert [m.team for m in Membership.objects.filter(user=person)] == [elsewhere]
    actions = AuditEvent.objects.filter(object_type="accounts.membership").order_by("id")
    assert [(e.action, e.team) for e in actions] == [
        ("remove_member", team),
        ("add_member", elsewhere),
    ]


def test_role_groups_are_not_offered_as_plain_groups(admin_client, django_user_model):
    plain = Group.objects.create(name="auditors")
    person = django_user_model.objects.create_user("person")
    url = reverse("admin:auth_user_change", args=[person.pk])
    page = admin_client.get(url)
    groups = page.context["adminform"].form.fields["groups"]
    assert list(groups.queryset) == [plain]
    assert "given per team under Team memberships below" in page.content.decode()

    # Posted anyway, a role group is refused, not silently stored.
    data = user_form(admin_client, person, []) | {"groups": [role_group(Role.MANAGER).pk]}
    response = admin_client.post(url, data)
    assert response.status_code == 200
    assert "groups" in response.context["adminform"].form.errors
    assert not person.groups.exists()


def test_group_admin_says_role_groups_are_given_through_memberships(admin_client):
    listing = admin_client.get(reverse("admin:auth_group_changelist"))
    assert listing.context["cl"].list_display == ["action_checkbox", "name", "team_role"]
    role = role_group(Role.VIEWER)
    page = admin_client.get(reverse("admin:auth_group_change", args=[role.pk])).content.decode()
    assert "This group is a team role" in page
    plain = Group.objects.create(name="auditors")
    page = admin_client.get(reverse("admin:auth_group_change", args=[plain.pk])).content.decode()
    assert "This group is a team role" not in page
