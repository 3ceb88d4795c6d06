"""Notifications in the admin: scoped to the teams one manages, the URL write-only, every
change through notifications.services (its audit row), the delivery log read-only."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from accounts.models import AuditEvent, Role, Source
from jobs.models import Job
from notifications.models import (
    Delivery,
    DeliveryAttempt,
    Event,
    NotificationChannel,
    NotificationRule,
)
from notifications.tests.helpers import HOOK_URL

pytestmark = [pytest.mark.django_db, pytest.mark.timeout(60)]


@pytest.fixture
def manager(make_member, team) -> Client:
    client = Client()
    client.force_login(make_member(team, Role.MANAGER))
    return client


@pytest.fixture
def admin_client(superuser) -> Client:
    client = Client()
    client.force_login(superuser)
    return client


def audit_of(model: str) -> list[tuple[str, str]]:
    rows = AuditEvent.objects.filter(object_type=f"notifications.{model}").order_by("id")
    return list(rows.values_list("action", "source"))


@pytest.mark.parametrize("who", ["manager", "admin_client"])
def test_the_admin_pages_load(request, who, channel):
    client = request.getfixturevalue(who)
    rule = NotificationRule.objects.create(channel=channel, events=[Event.FAILED])
    delivery = Delivery.objects.create(channel=channel, event="test", title="t", body="b")
    for name, obj in (
        ("notificationchannel", channel),
        ("notificationrule", rule),
        ("delivery", delivery),
    ):
        listed = client.get(reverse(f"admin:notifications_{name}_changelist"))
        assert listed.status_code == 200, name
        page = client.get(reverse(f"admin:notifications_{name}_change", args=[obj.pk]))
        assert page.status_code == 200, name
        assert HOOK_URL not in page.content.decode()
    assert client.get(reverse("admin:notifications_notificationchannel_add")).status_code == 200
    assert client.get(reverse("admin:notifications_notificationrule_add")).status_code == 200


def test_a_manager_adds_a_channel_through_the_service_and_sees_its_secret_once(manager, team):
    response = manager.post(
        reverse("admin:notifications_notificationchannel_add"),
        {"team": team.pk, "name": "ops-hook", "new_url": HOOK_URL, "enabled": "on"},
        follow=True,
    )
    assert response.status_code == 200
    channel = NotificationChannel.objects.get()
    assert (channel.url, channel.enabled) == (HOOK_URL, True)
    assert channel.signing_secret.encode() in response.content  # the message, shown once
    assert HOOK_URL not in response.content.decode()
    assert audit_of("notificationchannel") == [("create", Source.ADMIN)]
    page = manager.get(reverse("admin:notifications_notificationchannel_change", args=[channel.pk]))
    assert channel.signing_secret.encode() not in page.content
    assert "https://hooks.example.test/…" in page.content.decode()
    assert "T0K3N" not in page.content.decode()


def test_an_empty_url_keeps_the_current_one(manager, channel):
    url = reverse("admin:notifications_notificationchannel_change", args=[channel.pk])
    response = manager.post(url, {"name": "renamed", "new_url": "", "enabled": "on"})
    assert response.status_code == 302, response.content.decode()[:2000]
    channel.refresh_from_db()
    assert (channel.name, channel.url) == ("renamed", HOOK_URL)
    assert audit_of("notificationchannel")[-1] == ("change", Source.ADMIN)
    assert AuditEvent.objects.filter(action="change").get().details == {"fields": ["name"]}


def test_the_admin_refuses_a_url_no_delivery_could_use(manager, team):
    response = manager.post(
        reverse("admin:notifications_notificationchannel_add"),
        {"team": team.pk, "name": "bad", "new_url": "syslog://T0K3N-admin-abcdef"},
    )
    assert response.status_code == 200
    assert "notifies the worker" in response.content.decode()
    assert "T0K3N" not in response.content.decode()
    assert not NotificationChannel.objects.exists()


def test_a_manager_adds_and_deletes_rules_of_their_teams_jobs_only(
    manager, channel, team, other_team
):
    job = Job.objects.create(team=team, name="deploy", script="true")
    theirs = Job.objects.create(team=other_team, name="theirs", script="true")
    add = reverse("admin:notifications_notificationrule_add")
    form = {"channel": channel.pk, "events": [Event.FAILED], "after_failures": 3, "enabled": "on"}
    refused = manager.post(add, form | {"job": theirs.pk})
    assert refused.status_code == 200
    assert not NotificationRule.objects.exists()
    assert manager.post(add, form | {"job": job.pk}).status_code == 302
    rule = NotificationRule.objects.get()
    assert (rule.channel, rule.job, rule.events) == (channel, job, [Event.FAILED])
    delete = reverse("admin:notifications_notificationrule_delete", args=[rule.pk])
    assert manager.post(delete, {"post": "yes"}).status_code == 302
    assert not NotificationRule.objects.exists()
    assert audit_of("notificationrule") == [("create", Source.ADMIN), ("delete", Source.ADMIN)]


def test_the_delivery_log_is_read_only_with_its_attempts(manager, channel):
    delivery = Delivery.objects.create(channel=channel, event="test", title="t", body="b")
    DeliveryAttempt.objects.create(delivery=delivery, number=1, ok=False, answer="HTTP 502 nope")
    page = manager.get(reverse("admin:notifications_delivery_change", args=[delivery.pk]))
    assert "HTTP 502 nope" in page.content.decode()
    assert b'name="_save"' not in page.content
    add = manager.get(reverse("admin:notifications_delivery_add"))
    assert add.status_code == 403


def test_a_manager_deletes_a_channel_with_its_log_through_the_service(manager, channel):
    Delivery.objects.create(channel=channel, event="test", title="t", body="b")
    url = reverse("admin:notifications_notificationchannel_delete", args=[channel.pk])
    confirm = manager.get(url)
    assert b"permission to delete" not in confirm.content
    assert manager.post(url, {"post": "yes"}).status_code == 302
    assert not NotificationChannel.objects.exists()
    assert not Delivery.objects.exists()
    assert audit_of("notificationchannel")[-1] == ("delete", Source.ADMIN)


def test_another_teams_manager_sees_none_of_it(make_member, other_team, channel):
    client = Client()
    client.force_login(make_member(other_team, Role.MANAGER))
    delivery = Delivery.objects.create(channel=channel, event="test", title="t", body="b")
    listed = client.get(reverse("admin:notifications_notificationchannel_changelist"))
    assert b"ops-hook" not in listed.content
    for name, obj in (("notificationchannel", channel), ("delivery", delivery)):
        page = client.get(reverse(f"admin:notifications_{name}_change", args=[obj.pk]))
        assert page.status_code == 302  # the admin's "does not exist", back to its index
    add = client.get(reverse("admin:notifications_notificationrule_add")).content.decode()
    assert "ops-hook" not in add


def test_a_rule_names_a_job_of_its_channels_team_even_for_a_superuser(
    admin_client, channel, other_team
):
    theirs = Job.objects.create(team=other_team, name="theirs", script="true")
    response = admin_client.post(
        reverse("admin:notifications_notificationrule_add"),
        {"channel": channel.pk, "job": theirs.pk, "events": [Event.FAILED], "after_failures": 3},
    )
    assert response.status_code == 200
    assert "The job is not of the channel&#x27;s team." in response.content.decode()
    assert not NotificationRule.objects.exists()
