"""Team ownership declared once: the list filter and the object check follow the same path.

Every team-owned model is checked the same way: for each role, each permission a role can
hold and each permission on the model, `user.has_perm(perm, obj)` says yes exactly for
the objects `policy.restrict(..., perm)` lists.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import count

import pytest
from django.apps import apps
from django.contrib.auth.models import Permission, User
from django.contrib.contenttypes.models import ContentType
from django.db.models import Model
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts import policy
from accounts.models import AuditEvent, Membership, Role, Source, Team
from accounts.ownership import is_team_owned, team_id_of, view_permission
from accounts.roles import DEFAULT_PERMISSIONS, MANAGER, role_group
from executions.models import Execution, HostRun, LogChunk
from jobs.models import Job, Schedule, SecretVariable, Webhook, WebhookDelivery
from notifications.models import Delivery, DeliveryAttempt, NotificationChannel, NotificationRule
from servers.models import Server

pytestmark = pytest.mark.django_db

serial = count()


def execution_in(team: Team) -> Execution:
    return Execution.objects.create(
        team=team,
        job_name="j",
        script="true",
        interpreter="/bin/sh",
        max_parallel=1,
        trigger=Source.SYSTEM,
    )


def host_run_in(team: Team) -> HostRun:
    return HostRun.objects.create(execution=execution_in(team), server_name="s", address="a")


def chunk_in(team: Team) -> LogChunk:
    run = host_run_in(team)
    return LogChunk.objects.create(
        execution=run.execution, host_run=run, seq=0, stream=1, data=b"x", created_at=timezone.now()
    )


def schedule_in(team: Team) -> Schedule:
    return Schedule.objects.create(job=FACTORIES[Job](team), cron="0 3 * * *", timezone="UTC")


def webhook_in(team: Team) -> Webhook:
    job = FACTORIES[Job](team)
    return Webhook.objects.create(job=job, name="hook", key=f"key-{next(serial)}")


def channel_in(team: Team) -> NotificationChannel:
    return NotificationChannel.objects.create(
        team=team, name=f"c-{next(serial)}", url="json://127.0.0.1:9/x"
    )


def delivery_in(team: Team) -> Delivery:
    return Delivery.objects.create(channel=channel_in(team), event="test", title="t", body="b")


def membership_in(team: Team) -> Membership:
    user = User.objects.create_user(f"member-{next(serial)}")
    return Membership.objects.create(team=team, user=user, role=role_group(Role.VIEWER))


# One object of the model in the given team. A new team-owned model is added here.
FACTORIES: dict[type[Model], Callable[[Team], Model]] = {
    Team: lambda team: team,
    Membership: membership_in,
    AuditEvent: lambda team: AuditEvent.objects.create(
        team=team, action="x", source=Source.SYSTEM, object_type="t"
    ),
    Server: lambda team: Server.objects.create(
        team=team, name=f"s-{next(serial)}", host="h", username="u"
    ),
    Job: lambda team: Job.objects.create(team=team, name=f"j-{next(serial)}", script="true"),
    SecretVariable: lambda team: SecretVariable.objects.create(
        team=team, name=f"S_{next(serial)}", value="secret-value"
    ),
    Schedule: schedule_in,
    Webhook: webhook_in,
    WebhookDelivery: lambda team: WebhookDelivery.objects.create(
        webhook=webhook_in(team), status_code=401
    ),
    Execution: execution_in,
    HostRun: host_run_in,
    LogChunk: chunk_in,
    NotificationChannel: channel_in,
    NotificationRule: lambda team: NotificationRule.objects.create(
        channel=channel_in(team), events=["failed"]
    ),
    Delivery: delivery_in,
    DeliveryAttempt: lambda team: DeliveryAttempt.objects.create(
        delivery=delivery_in(team), number=1
    ),
}


def test_every_team_owned_model_is_checked_here():
    assert {model for model in apps.get_models() if is_team_owned(model)} == set(FACTORIES)


def perms_to_check(model: type[Model]) -> set[str]:
    own = Permission.objects.filter(content_type=ContentType.objects.get_for_model(model))
    return {f"{model._meta.app_label}.{p.codename}" for p in own} | set(MANAGER)


@pytest.mark.parametrize("model", FACTORIES, ids=lambda model: model._meta.label_lower)
@pytest.mark.parametrize("role", [*Role, None], ids=lambda role: role or "outsider")
def test_object_check_agrees_with_the_restricted_list(model, role, team, other_team):
    ours, theirs = FACTORIES[model](team), FACTORIES[model](other_team)
    assert (team_id_of(ours), team_id_of(theirs)) == (team.pk, other_team.pk)
    user = User.objects.create_user("person")
    if role is not None:
        Membership.objects.create(team=team, user=user, role=role_group(role))
    queryset = model._default_manager.filter(pk__in=[ours.pk, theirs.pk])
    for perm in perms_to_check(model):
        listed = set(policy.restrict(queryset, user, perm))
        allowed = {obj for obj in (ours, theirs) if user.has_perm(perm, obj)}
        assert listed == allowed, perm
        assert theirs not in listed, perm
    seen = set(policy.visible(queryset, user))
    assert seen == {obj for obj in (ours, theirs) if user.has_perm(view_permission(model), obj)}
    assert (ours in seen) is (
        role is not None and view_permission(model) in DEFAULT_PERMISSIONS[role]
    )


def test_host_runs_and_output_are_seen_with_their_execution(make_member, team):
    viewer = make_member(team, Role.VIEWER)
    run = host_run_in(team)
    assert viewer.has_perm("executions.view_execution", run)
    assert viewer.has_perm("executions.view_execution", chunk_in(team))
    assert list(policy.visible(HostRun.objects.all(), viewer)) == list(HostRun.objects.all())


def test_a_model_without_a_team_cannot_be_restricted(superuser):
    with pytest.raises(TypeError, match="not team-owned"):
        policy.visible(User.objects.all(), superuser)


@pytest.fixture
def managers_may_change_users() -> None:
    """A superuser gives the manager role permissions on users, which have no team."""
    group = role_group(Role.MANAGER)
    group.permissions.add(
        *Permission.objects.filter(content_type__app_label="auth", codename__endswith="_user")
    )


def test_role_permissions_on_models_without_a_team_grant_nothing(
    managers_may_change_users, make_member, team
):
    manager = make_member(team, Role.MANAGER)
    assert not manager.has_perm("auth.change_user")
    assert not manager.has_perm("auth.change_user", manager)
    assert manager.has_perm("servers.change_server")  # the role's team permissions still hold


def test_managers_cannot_edit_users_in_the_admin(
    managers_may_change_users, make_member, team, client: Client, django_user_model
):
    victim = django_user_model.objects.create_user("victim", email="victim@example.com")
    client.force_login(make_member(team, Role.MANAGER))
    change = reverse("admin:auth_user_change", args=[victim.pk])
    assert client.get(reverse("admin:auth_user_changelist")).status_code == 403
    assert client.get(change).status_code == 403
    response = client.post(
        change, {"username": "victim", "email": "mine@example.com", "is_superuser": "on"}
    )
    assert response.status_code == 403
    victim.refresh_from_db()
    assert (victim.email, victim.is_superuser) == ("victim@example.com", False)
