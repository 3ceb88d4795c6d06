"""The admin for staff who are not superusers: one team's objects, and only their role's actions.

Each test has a staff member of team "ops" (A) and objects in "ops" and in "elsewhere" (B).
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from django.contrib.messages import get_messages
from django.test import Client
from django.urls import reverse

from accounts import audit
from accounts.models import AuditEvent, Membership, Role, Source, Team
from accounts.roles import role_group
from executions import services
from executions.models import Execution, Status, Trigger
from jobs.models import Job
from servers.models import Server

pytestmark = [pytest.mark.django_db, pytest.mark.timeout(60)]


@dataclass
class Side:
    team: Team
    server: Server
    job: Job
    execution: Execution


@pytest.fixture
def ours(team, make_server, make_job) -> Side:
    server = make_server(name="our-server")
    job = make_job("echo ours", [server], name="our-job")
    return Side(team, server, job, services.start_execution(job, trigger=Trigger.SYSTEM))


@pytest.fixture
def theirs(other_team, make_server, make_job) -> Side:
    server = make_server(name="their-server", team=other_team)
    job = make_job("echo theirs", [server], name="their-job")
    return Side(other_team, server, job, services.start_execution(job, trigger=Trigger.SYSTEM))


def logged_in(client: Client, user) -> Client:
    client.force_login(user)
    return client


def messages_of(response) -> list[str]:
    return [str(message) for message in get_messages(response.wsgi_request)]


CHANGELISTS = {
    "servers_server": lambda side: side.server,
    "jobs_job": lambda side: side.job,
    "executions_execution": lambda side: side.execution,
    "executions_hostrun": lambda side: side.execution.host_runs.get(),
}


@pytest.mark.parametrize("role", list(Role))
@pytest.mark.parametrize("model", CHANGELISTS)
def test_changelist_shows_only_own_team(client, make_member, ours, theirs, role, model):
    logged_in(client, make_member(ours.team, role))
    response = client.get(reverse(f"admin:{model}_changelist"))
    assert response.status_code == 200
    shown = set(response.context["cl"].result_list)
    assert shown == {CHANGELISTS[model](ours)}


@pytest.mark.parametrize("role", list(Role))
@pytest.mark.parametrize("model", CHANGELISTS)
def test_other_teams_object_does_not_exist_in_the_admin(
    client, make_member, ours, theirs, role, model
):
    logged_in(client, make_member(ours.team, role))
    hidden = CHANGELISTS[model](theirs)
    for view in ("change", "history"):
        response = client.get(reverse(f"admin:{model}_{view}", args=[hidden.pk]))
        # Django's admin answers an object outside get_queryset() exactly like a deleted one.
        assert response.status_code == 302, view
        assert response["Location"] == reverse("admin:index")
        name = hidden._meta.verbose_name
        assert messages_of(response)[-1] == (
            f"{name} with ID “{hidden.pk}” doesn’t exist. Perhaps it was deleted?"  # noqa: RUF001
        )
    # The delete page checks the permission first (403 for roles that may delete nothing),
    # then existence: either way the same answer as for an id that was never used.
    hidden_delete = client.get(reverse(f"admin:{model}_delete", args=[hidden.pk]))
    missing_delete = client.get(reverse(f"admin:{model}_delete", args=[999999]))
    assert hidden_delete.status_code == missing_delete.status_code
    assert hidden_delete.get("Location") == missing_delete.get("Location")
    own = CHANGELISTS[model](ours)
    assert client.get(reverse(f"admin:{model}_change", args=[own.pk])).status_code == 200


# model, action, the role that may use it
ACTIONS = [
    ("servers_server", "test_connection", Role.OPERATOR),
    ("servers_server", "fetch_and_trust_host_key", Role.MANAGER),
    ("jobs_job", "run_job", Role.OPERATOR),
    ("executions_execution", "cancel", Role.OPERATOR),
]
RANK = {Role.VIEWER: 0, Role.OPERATOR: 1, Role.MANAGER: 2}


@pytest.mark.parametrize("role", list(Role))
def test_actions_offered_follow_the_role(client, make_member, ours, role):
    logged_in(client, make_member(ours.team, role))
    for model, action, needed in ACTIONS:
        action_form = client.get(reverse(f"admin:{model}_changelist")).context["action_form"]
        # No action at all for the role: Django shows no action form.
        offered = (
            {name for name, _label in action_form.fields["action"].choices}
            if action_form
            else set()
        )
        assert (action in offered) == (RANK[role] >= RANK[needed]), (model, action)
        assert "delete_selected" not in offered  # bulk delete is for superusers only


def post_action(client: Client, model: str, action: str, obj, **extra: str):
    return client.post(
        reverse(f"admin:{model}_changelist"),
        {"action": action, "_selected_action": [obj.pk], **extra},
    )


def test_viewer_posting_actions_changes_nothing(client, make_member, ours):
    logged_in(client, make_member(ours.team, Role.VIEWER))
    events = AuditEvent.objects.count()
    fingerprint = ours.server.host_key_fingerprint

    # Without a permitted action Django does not even read the posted one: the list renders.
    response = post_action(client, "servers_server", "test_connection", ours.server)
    assert response.status_code == 200
    response = post_action(
        client,
        "servers_server",
        "fetch_and_trust_host_key",
        ours.server,
        confirm="yes",
        **{f"fingerprint-{ours.server.pk}": fingerprint},
    )
    assert response.status_code == 200
    post_action(client, "jobs_job", "run_job", ours.job)
    post_action(client, "executions_execution", "cancel", ours.execution)

    ours.server.refresh_from_db()
    ours.execution.refresh_from_db()
    assert ours.server.last_check_at is None
    assert ours.server.host_key_trusted_by is None
    assert Execution.objects.filter(job=ours.job).count() == 1
    assert ours.execution.status == Status.QUEUED
    assert AuditEvent.objects.count() == events


def test_manager_can_use_every_action(client, make_member, ours):
    manager = make_member(ours.team, Role.MANAGER)
    logged_in(client, manager)

    post_action(client, "servers_server", "test_connection", ours.server)
    ours.server.refresh_from_db()
    assert ours.server.last_check_status == "ok"

    post_action(
        client,
        "servers_server",
        "fetch_and_trust_host_key",
        ours.server,
        confirm="yes",
        **{f"fingerprint-{ours.server.pk}": ours.server.host_key_fingerprint},
    )
    ours.server.refresh_from_db()
    assert ours.server.host_key_trusted_by == manager

    post_action(client, "jobs_job", "run_job", ours.job)
    assert Execution.objects.filter(job=ours.job, triggered_by=manager).count() == 1

    post_action(client, "executions_execution", "cancel", ours.execution)
    ours.execution.refresh_from_db()
    assert ours.execution.status == Status.CANCELLED
    assert ours.execution.cancel_requested_by == manager


def test_actions_never_reach_another_teams_objects(client, make_member, ours, theirs):
    logged_in(client, make_member(ours.team, Role.MANAGER))
    post_action(client, "servers_server", "test_connection", theirs.server)
    post_action(client, "jobs_job", "run_job", theirs.job)
    post_action(client, "executions_execution", "cancel", theirs.execution)
    theirs.server.refresh_from_db()
    theirs.execution.refresh_from_db()
    assert theirs.server.last_check_at is None
    assert Execution.objects.filter(job=theirs.job).count() == 1
    assert theirs.execution.status == Status.QUEUED


def test_manager_can_only_choose_own_team(client, make_member, ours, theirs, sshd):
    logged_in(client, make_member(ours.team, Role.MANAGER))
    for model in ("servers_server", "jobs_job"):
        form = client.get(reverse(f"admin:{model}_add")).context["adminform"].form
        assert list(form.fields["team"].queryset) == [ours.team]

    response = client.post(
        reverse("admin:servers_server_add"),
        {
            "team": theirs.team.pk,
            "name": "sneaky",
            "host": sshd.host,
            "port": sshd.port,
            "username": sshd.username,
            "auth_method": "password",
        },
    )
    assert response.status_code == 200
    assert "Select a valid choice" in response.context["adminform"].form.errors["team"][0]
    assert not Server.objects.filter(name="sneaky").exists()


def job_form(team: Team, servers: list[Server], name: str = "new-job") -> dict[str, object]:
    return {
        "team": team.pk,
        "name": name,
        "description": "",
        "enabled": "on",
        "interpreter": "/bin/bash",
        "script": "true",
        "servers": [server.pk for server in servers],
        "max_parallel": 10,
        "timeout_seconds": "",
    }


def test_job_cannot_target_another_teams_server(client, make_member, superuser, ours, theirs):
    logged_in(client, make_member(ours.team, Role.MANAGER))
    form = client.get(reverse("admin:jobs_job_add")).context["adminform"].form
    assert list(form.fields["servers"].queryset) == [ours.server]
    response = client.post(reverse("admin:jobs_job_add"), job_form(ours.team, [theirs.server]))
    assert response.status_code == 200
    assert "Select a valid choice" in response.context["adminform"].form.errors["servers"][0]

    # A superuser sees both teams' servers, and still cannot mix them.
    logged_in(client, superuser)
    response = client.post(
        reverse("admin:jobs_job_add"), job_form(ours.team, [ours.server, theirs.server])
    )
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["servers"] == [
        "not servers of team ops: their-server"
    ]
    assert not Job.objects.filter(name="new-job").exists()

    response = client.post(reverse("admin:jobs_job_add"), job_form(ours.team, [ours.server]))
    assert response.status_code == 302
    assert list(Job.objects.get(name="new-job").servers.all()) == [ours.server]


def membership_form(team: Team, rows: list[dict[str, object]]) -> dict[str, object]:
    data: dict[str, object] = {
        "memberships-TOTAL_FORMS": len(rows),
        "memberships-INITIAL_FORMS": sum(1 for row in rows if "id" in row),
        "memberships-MIN_NUM_FORMS": 0,
        "memberships-MAX_NUM_FORMS": 1000,
    }
    for index, row in enumerate(rows):
        for key, value in row.items():
            data[f"memberships-{index}-{key}"] = value
        data[f"memberships-{index}-team"] = team.pk
    return data


def test_manager_manages_own_team_members_in_the_team_admin(
    client, make_member, django_user_model, ours, theirs
):
    manager = make_member(ours.team, Role.MANAGER)
    newcomer = django_user_model.objects.create_user("newcomer")
    logged_in(client, manager)

    listing = client.get(reverse("admin:accounts_team_changelist"))
    assert list(listing.context["cl"].result_list) == [ours.team]
    hidden = client.get(reverse("admin:accounts_team_change", args=[theirs.team.pk]))
    assert hidden.status_code == 302
    assert hidden["Location"] == reverse("admin:index")

    existing = Membership.objects.get(team=ours.team, user=manager)
    url = reverse("admin:accounts_team_change", args=[ours.team.pk])
    # The admin's user search needs a permission on users that managers do not have: they
    # choose from a plain list, rendered in the page.
    page = client.get(url).content.decode()
    assert f'<option value="{newcomer.pk}">newcomer</option>' in page
    search = reverse("admin:autocomplete")
    params = {"app_label": "accounts", "model_name": "membership", "field_name": "user"}
    assert client.get(search, params).status_code == 403
    response = client.post(
        url,
        membership_form(
            ours.team,
            [
                {"id": existing.pk, "user": manager.pk, "role": existing.role_id},
                {"user": newcomer.pk, "role": role_group(Role.OPERATOR).pk},
            ],
        ),
    )
    assert response.status_code == 302, response.context["inline_admin_formsets"][0].formset.errors
    added = Membership.objects.get(team=ours.team, user=newcomer)
    assert added.role == role_group(Role.OPERATOR)
    event = AuditEvent.objects.get(action="add_member")
    assert (event.actor, event.team, event.source, event.object_id) == (
        manager,
        ours.team,
        Source.ADMIN,
        str(added.pk),
    )
    assert event.details == {"user": "newcomer", "role": "Team operator"}
    ours.team.refresh_from_db()
    assert ours.team.name == "ops"  # the team's own fields are read-only for managers


@pytest.mark.parametrize("role", [Role.VIEWER, Role.OPERATOR])
def test_viewer_and_operator_see_members_but_cannot_change_them(
    client, make_member, django_user_model, ours, role
):
    logged_in(client, make_member(ours.team, role))
    newcomer = django_user_model.objects.create_user("newcomer")
    url = reverse("admin:accounts_team_change", args=[ours.team.pk])
    assert client.get(url).status_code == 200
    response = client.post(
        url,
        membership_form(ours.team, [{"user": newcomer.pk, "role": role_group(Role.MANAGER).pk}]),
    )
    assert response.status_code == 403
    assert not Membership.objects.filter(user=newcomer).exists()


def test_audit_admin_shows_own_team_to_managers_and_nothing_to_viewers(
    client, make_member, ours, theirs
):
    # Starting the fixtures' executions recorded a "run" event in each team.
    assert set(AuditEvent.objects.values_list("team", flat=True)) == {
        ours.team.pk,
        theirs.team.pk,
    }
    logged_in(client, make_member(ours.team, Role.MANAGER))
    response = client.get(reverse("admin:accounts_auditevent_changelist"))
    assert response.status_code == 200
    assert {event.team for event in response.context["cl"].result_list} == {ours.team}
    hidden = AuditEvent.objects.get(team=theirs.team)
    response = client.get(reverse("admin:accounts_auditevent_change", args=[hidden.pk]))
    assert response.status_code == 302

    for role in (Role.VIEWER, Role.OPERATOR):
        logged_in(client, make_member(ours.team, role))
        assert client.get(reverse("admin:accounts_auditevent_changelist")).status_code == 403
        index = client.get(reverse("admin:index"))
        models = {m["object_name"] for app in index.context["app_list"] for m in app["models"]}
        assert "AuditEvent" not in models


@pytest.mark.parametrize(
    "model", ["servers_server", "jobs_job", "executions_execution", "accounts_auditevent"]
)
def test_list_filters_offer_only_what_the_user_may_see(
    client, make_member, make_server, make_job, ours, theirs, model
):
    # Two teams of the user's own, so that Django shows the team filter at all.
    second = Team.objects.create(name="second")
    job = make_job("true", [make_server(name="second-server", team=second)])
    services.start_execution(job, trigger=Trigger.SYSTEM)
    theirs.server.tags.create(name="their-tag")
    for changed in (ours.job, job, theirs.job):
        audit.record("change", changed, actor=None, source=Source.ADMIN)
    user = make_member(ours.team, Role.MANAGER)
    Membership.objects.create(team=second, user=user, role=role_group(Role.MANAGER))
    logged_in(client, user)
    response = client.get(reverse(f"admin:{model}_changelist"))
    assert response.status_code == 200
    html = response.content.decode()
    for team in (ours.team, second):
        assert f'<a href="?team__id__exact={team.pk}">{team.name}</a>' in html
    for name in (theirs.team.name, theirs.job.name, "their-tag"):
        assert name not in html
