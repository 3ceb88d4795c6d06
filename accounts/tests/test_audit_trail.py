"""One audit event per change through the admin or the API: who, what, from where."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.models import ApiToken, AuditEvent, Membership, Role, Source, Team
from accounts.roles import role_group
from executions.models import Execution, Status
from jobs.models import Job
from servers import ssh
from servers.models import Server, Tag

pytestmark = [pytest.mark.django_db, pytest.mark.timeout(60)]


@dataclass(frozen=True)
class Event:
    action: str
    actor: User | None
    team: Team | None
    source: str
    object_type: str
    object_id: str


@pytest.fixture
def manager(make_member, team) -> User:
    return make_member(team, Role.MANAGER)


@pytest.fixture
def recorded() -> Callable[[], list[Event]]:
    """The events recorded since the fixture was set up, oldest first."""
    last = AuditEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0

    def events() -> list[Event]:
        return [
            Event(e.action, e.actor, e.team, e.source, e.object_type, e.object_id)
            for e in AuditEvent.objects.filter(id__gt=last)
            .select_related("actor", "team")
            .order_by("id")
        ]

    return events


@pytest.fixture
def admin(client: Client, manager: User) -> Client:
    client.force_login(manager)
    return client


@pytest.fixture
def api(manager: User) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {ApiToken.issue(manager, 'audit')[1]}")
    return client


def server_form(team: Team, sshd, **changes: object) -> dict[str, object]:
    return {
        "team": team.pk,
        "name": "web-1",
        "host": sshd.host,
        "port": sshd.port,
        "username": sshd.username,
        "auth_method": "key",
        "description": "",
    } | changes


# --- through the admin ---------------------------------------------------------------


def test_admin_create_change_delete_are_audited(admin, manager, team, sshd, recorded):
    added = admin.post(reverse("admin:servers_server_add"), server_form(team, sshd))
    assert added.status_code == 302
    server = Server.objects.get(name="web-1")
    url = reverse("admin:servers_server_change", args=[server.pk])
    form = server_form(team, sshd, description="changed")
    assert admin.post(url, form).status_code == 302
    delete = reverse("admin:servers_server_delete", args=[server.pk])
    assert admin.post(delete, {"post": "yes"}).status_code == 302
    assert not Server.objects.exists()

    pk = str(server.pk)
    assert recorded() == [
        Event("create", manager, team, Source.ADMIN, "servers.server", pk),
        Event("change", manager, team, Source.ADMIN, "servers.server", pk),
        Event("delete", manager, team, Source.ADMIN, "servers.server", pk),
    ]


def test_admin_bulk_delete_is_audited_per_object(client, superuser, team, recorded):
    servers = [Server.objects.create(team=team, name=n, host="h", username="u") for n in "ab"]
    client.force_login(superuser)
    changelist = reverse("admin:servers_server_changelist")
    selected = {"action": "delete_selected", "_selected_action": [s.pk for s in servers]}
    assert client.post(changelist, selected | {"post": "yes"}).status_code == 302
    assert not Server.objects.exists()
    assert recorded() == [
        Event("delete", superuser, team, Source.ADMIN, "servers.server", str(s.pk)) for s in servers
    ]


def test_admin_run_cancel_and_trust_are_audited(
    admin, manager, team, make_server, make_job, recorded
):
    server = make_server(host_key="")  # not trusted yet
    job = make_job("true", [server])
    changelist = reverse("admin:jobs_job_changelist")
    admin.post(changelist, {"action": "run_job", "_selected_action": [job.pk]})
    execution = Execution.objects.get()
    admin.post(
        reverse("admin:executions_execution_changelist"),
        {"action": "cancel", "_selected_action": [execution.pk]},
    )
    execution.refresh_from_db()
    assert execution.status == Status.CANCELLED

    offered = ssh.fetch_host_key(server.host, server.port)
    admin.post(
        reverse("admin:servers_server_changelist"),
        {
            "action": "fetch_and_trust_host_key",
            "_selected_action": [server.pk],
            "confirm": "yes",
            f"fingerprint-{server.pk}": offered.fingerprint,
        },
    )
    server.refresh_from_db()
    assert server.host_key_fingerprint == offered.fingerprint

    assert recorded() == [
        Event("run", manager, team, Source.ADMIN, "executions.execution", str(execution.pk)),
        Event("cancel", manager, team, Source.ADMIN, "executions.execution", str(execution.pk)),
        Event("trust_host_key", manager, team, Source.ADMIN, "servers.server", str(server.pk)),
    ]
    trusted = AuditEvent.objects.get(action="trust_host_key")
    assert trusted.details == {"fingerprint": offered.fingerprint, "previous": ""}
    assert trusted.actor_name == manager.username
    assert timezone.now() - trusted.at < timedelta(minutes=1)


def test_admin_job_changes_are_audited(admin, manager, team, make_server, recorded):
    server = make_server()
    form = {
        "team": team.pk,
        "name": "deploy",
        "description": "",
        "enabled": "on",
        "interpreter": "/bin/bash",
        "script": "true",
        "servers": [server.pk],
        "max_parallel": 10,
        "timeout_seconds": "",
    }
    assert admin.post(reverse("admin:jobs_job_add"), form).status_code == 302
    job = Job.objects.get()
    change = reverse("admin:jobs_job_change", args=[job.pk])
    assert admin.post(change, form | {"script": "false"}).status_code == 302
    assert recorded() == [
        Event("create", manager, team, Source.ADMIN, "jobs.job", str(job.pk)),
        Event("change", manager, team, Source.ADMIN, "jobs.job", str(job.pk)),
    ]


def test_admin_refused_action_records_nothing(client, make_member, team, make_job, recorded):
    client.force_login(make_member(team, Role.VIEWER))
    job = make_job("true", [])
    changelist = reverse("admin:jobs_job_changelist")
    client.post(changelist, {"action": "run_job", "_selected_action": [job.pk]})
    assert recorded() == []


# --- through the API -----------------------------------------------------------------


def test_api_create_change_delete_are_audited(api, manager, team, sshd, recorded):
    body = {"team": team.pk, "name": "web-1", "host": sshd.host, "username": sshd.username}
    created = api.post("/api/v1/servers/", body, format="json")
    assert created.status_code == 201, created.json()
    pk = created.json()["id"]
    changed = api.patch(f"/api/v1/servers/{pk}/", {"description": "x"}, format="json")
    assert changed.status_code == 200
    assert api.delete(f"/api/v1/servers/{pk}/").status_code == 204

    job = api.post("/api/v1/jobs/", {"team": team.pk, "name": "j", "script": "true"}, format="json")
    assert job.status_code == 201
    job_pk = job.json()["id"]
    job_changed = api.patch(f"/api/v1/jobs/{job_pk}/", {"script": "false"}, format="json")
    assert job_changed.status_code == 200
    assert api.delete(f"/api/v1/jobs/{job_pk}/").status_code == 204

    assert recorded() == [
        Event("create", manager, team, Source.API, "servers.server", str(pk)),
        Event("change", manager, team, Source.API, "servers.server", str(pk)),
        Event("delete", manager, team, Source.API, "servers.server", str(pk)),
        Event("create", manager, team, Source.API, "jobs.job", str(job_pk)),
        Event("change", manager, team, Source.API, "jobs.job", str(job_pk)),
        Event("delete", manager, team, Source.API, "jobs.job", str(job_pk)),
    ]
    assert AuditEvent.objects.get(action="change", object_type="servers.server").details == {
        "fields": ["description"]
    }


def test_api_run_cancel_and_trust_are_audited(api, manager, team, make_server, make_job, recorded):
    server = make_server(host_key="")
    job = make_job("true", [server])
    run = api.post(f"/api/v1/jobs/{job.pk}/run/", {}, format="json")
    assert run.status_code == 201
    execution_pk = run.json()["id"]
    assert api.post(f"/api/v1/executions/{execution_pk}/cancel/").status_code == 200
    offered = api.post(f"/api/v1/servers/{server.pk}/host-key/").json()
    trusted = api.post(
        f"/api/v1/servers/{server.pk}/host-key/trust/",
        {"fingerprint": offered["fingerprint"]},
        format="json",
    )
    assert trusted.status_code == 200

    assert recorded() == [
        Event("run", manager, team, Source.API, "executions.execution", str(execution_pk)),
        Event("cancel", manager, team, Source.API, "executions.execution", str(execution_pk)),
        Event("trust_host_key", manager, team, Source.API, "servers.server", str(server.pk)),
    ]
    assert AuditEvent.objects.get(action="run").details == {"job": job.pk, "servers": [server.pk]}


def test_api_refused_and_invalid_requests_record_nothing(
    api, make_member, team, make_server, make_job, recorded
):
    server = make_server()
    job = make_job("true", [server])
    viewer = APIClient()
    viewer.credentials(
        HTTP_AUTHORIZATION=f"Bearer {ApiToken.issue(make_member(team, Role.VIEWER), 'v')[1]}"
    )
    assert viewer.post(f"/api/v1/jobs/{job.pk}/run/", {}, format="json").status_code == 403
    assert viewer.delete(f"/api/v1/servers/{server.pk}/").status_code == 403
    bad = api.post("/api/v1/servers/", {"team": team.pk, "name": ""}, format="json")
    assert bad.status_code == 400
    wrong = api.post(
        f"/api/v1/servers/{server.pk}/host-key/trust/",
        {"fingerprint": "SHA256:" + "A" * 43},
        format="json",
    )
    assert wrong.status_code == 409
    assert recorded() == []


def test_api_token_and_membership_changes_are_audited(
    api, manager, team, django_user_model, recorded
):
    created = api.post("/api/v1/tokens/", {"name": "ci"}, format="json").json()
    assert api.delete(f"/api/v1/tokens/{created['id']}/").status_code == 204
    newcomer = django_user_model.objects.create_user("newcomer")
    members = f"/api/v1/teams/{team.pk}/members/"
    added = api.post(members, {"user": "newcomer", "role": "viewer"}, format="json")
    assert added.status_code == 201
    patch = api.patch(f"{members}newcomer/", {"role": "operator"}, format="json")
    assert patch.status_code == 200
    assert api.delete(f"{members}newcomer/").status_code == 204

    events = recorded()
    assert [(e.action, e.actor, e.source) for e in events] == [
        ("create_token", manager, Source.API),
        ("revoke_token", manager, Source.API),
        ("add_member", manager, Source.API),
        ("change_member", manager, Source.API),
        ("remove_member", manager, Source.API),
    ]
    assert {e.team for e in events[2:]} == {team}
    assert not newcomer.memberships.exists()


# --- through the UI ------------------------------------------------------------------


def test_ui_server_job_and_token_changes_are_audited(admin, manager, team, sshd, recorded):
    tag = Tag.objects.create(name="prod")
    form = server_form(team, sshd, tags=tag.name)
    assert admin.post(reverse("server-add"), form).status_code == 302
    server = Server.objects.get(name="web-1")
    assert list(server.tags.all()) == [tag]
    edit = reverse("server-edit", args=[server.pk])
    assert admin.post(edit, form | {"description": "changed"}).status_code == 302
    job_form = {"team": team.pk, "name": "deploy", "interpreter": "/bin/bash", "script": "true"}
    job_form |= {"servers": [server.pk], "max_parallel": 10}
    assert admin.post(reverse("job-add"), job_form).status_code == 302
    job = Job.objects.get()
    assert list(job.servers.all()) == [server]
    admin.post(reverse("token-list"), {"name": "laptop", "expires_in_days": 7})
    token = ApiToken.objects.get(name="laptop")
    assert admin.post(reverse("token-revoke", args=[token.pk])).status_code == 302

    assert recorded() == [
        Event("create", manager, team, Source.UI, "servers.server", str(server.pk)),
        Event("change", manager, team, Source.UI, "servers.server", str(server.pk)),
        Event("create", manager, team, Source.UI, "jobs.job", str(job.pk)),
        Event("create_token", manager, None, Source.UI, "accounts.apitoken", str(token.pk)),
        Event("revoke_token", manager, None, Source.UI, "accounts.apitoken", str(token.pk)),
    ]
    assert AuditEvent.objects.get(action="change").details == {"fields": ["description"]}


def test_admin_member_changes_are_audited(admin, manager, team, django_user_model, recorded):
    ann, bob, cid = (django_user_model.objects.create_user(name) for name in ("ann", "bob", "cid"))
    viewer, operator = role_group(Role.VIEWER), role_group(Role.OPERATOR)
    first = Membership.objects.create(team=team, user=ann, role=viewer)
    second = Membership.objects.create(team=team, user=bob, role=viewer)
    own = Membership.objects.get(user=manager)
    rows = [
        {"id": own.pk, "user": manager.pk, "role": own.role_id},
        {"id": first.pk, "user": ann.pk, "role": operator.pk},  # a new role
        {"id": second.pk, "user": cid.pk, "role": viewer.pk},  # bob's row now names cid
    ]
    data = {"name": team.name, "description": ""} | membership_rows(team, rows)
    url = reverse("admin:accounts_team_change", args=[team.pk])
    assert admin.post(url, data).status_code == 302
    assert {(m.user.username, m.role) for m in team.memberships.exclude(user=manager)} == {
        ("ann", operator),
        ("cid", viewer),
    }
    removal = membership_rows(team, [rows[0], rows[1] | {"DELETE": "on"}])
    assert admin.post(url, {"name": team.name, "description": ""} | removal).status_code == 302
    assert set(team.memberships.values_list("user__username", flat=True)) == {
        manager.username,
        "cid",
    }

    details = [
        (e.action, e.details)
        for e in AuditEvent.objects.filter(object_type="accounts.membership").order_by("id")
    ]
    assert details == [
        ("change_member", {"user": "ann", "role": "Team operator"}),
        ("remove_member", {"user": "bob", "role": "Team viewer"}),
        ("add_member", {"user": "cid", "role": "Team viewer"}),
        ("remove_member", {"user": "ann", "role": "Team operator"}),
    ]
    assert {(e.actor, e.team, e.source) for e in recorded()} == {(manager, team, Source.ADMIN)}


def membership_rows(team: Team, rows: list[dict[str, object]]) -> dict[str, object]:
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
