"""Notifications in the API: managers only, URLs write-only, the signing secret shown once,
rules within a team, the delivery log per channel.

The autouse `secret_watch` fixture (conftest.py) fails any test here whose responses show a
channel's URL, a token in it, or a signing secret anywhere but where it was made.
"""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from accounts.models import ApiToken, AuditEvent, Role
from jobs.models import Job
from notifications.models import Delivery, DeliveryAttempt, NotificationChannel, NotificationRule

pytestmark = [pytest.mark.django_db, pytest.mark.timeout(60)]

SLACK = "slack://T0ABCDEFG/B0ABCDEFG/secretslacktokenvalue123"


def api_as(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {ApiToken.issue(user, 'test')[1]}")
    return client


@pytest.fixture
def apis(make_member, team, other_team, superuser) -> dict[str, APIClient]:
    return {
        "viewer": api_as(make_member(team, Role.VIEWER)),
        "operator": api_as(make_member(team, Role.OPERATOR)),
        "manager": api_as(make_member(team, Role.MANAGER)),
        "other_team_manager": api_as(make_member(other_team, Role.MANAGER)),
        "superuser": api_as(superuser),
    }


def create_channel(api: APIClient, team, url: str = SLACK, name: str = "chat"):
    return api.post(
        "/api/v1/notification-channels/",
        {"team": team.pk, "name": name, "url": url},
        format="json",
    )


def test_a_manager_creates_a_channel_whose_url_is_never_shown_again(apis, team, other_team):
    api = apis["manager"]
    response = create_channel(api, team)
    assert response.status_code == 201, response.json()
    created = response.json()
    assert "url" not in created
    assert "signing_secret" not in created  # a Slack channel signs nothing
    assert created["destination"].startswith("slack://")
    assert "secretslacktokenvalue123" not in created["destination"]
    assert created["signed"] is False
    channel = NotificationChannel.objects.get()
    assert channel.url == SLACK
    listed = api.get("/api/v1/notification-channels/").json()["results"]
    assert [c["name"] for c in listed] == ["chat"]
    # Changing other fields keeps the URL; a new one replaces it.
    changed = api.patch(
        f"/api/v1/notification-channels/{channel.pk}/", {"name": "ops-chat"}, format="json"
    )
    assert changed.status_code == 200
    channel.refresh_from_db()
    assert (channel.name, channel.url) == ("ops-chat", SLACK)
    assert AuditEvent.objects.filter(object_type="notifications.notificationchannel").count() == 2
    moved = api.patch(
        f"/api/v1/notification-channels/{channel.pk}/", {"team": other_team.pk}, format="json"
    )
    assert moved.status_code == 400
    assert api.delete(f"/api/v1/notification-channels/{channel.pk}/").status_code == 204
    assert not NotificationChannel.objects.exists()


def test_a_signed_channel_shows_its_secret_once_and_on_rotation(apis, team):
    api = apis["manager"]
    created = create_channel(api, team, url="https://hooks.example.test/tsubame").json()
    assert created["signed"] is True
    secret = created["signing_secret"]
    assert secret.startswith("whsec_")
    channel = NotificationChannel.objects.get()
    assert channel.signing_secret == secret
    shown = api.get(f"/api/v1/notification-channels/{channel.pk}/").json()
    assert "signing_secret" not in shown
    rotated = api.post(f"/api/v1/notification-channels/{channel.pk}/rotate-secret/").json()
    assert rotated["signing_secret"] not in (secret, None)
    channel.refresh_from_db()
    assert channel.signing_secret == rotated["signing_secret"]


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("not a url", "A destination is a URL"),
        ("nonsense://x", "apprise does not understand"),
        ("syslog://", "notifies the worker's own machine"),
        ("https:///path", "names no host"),
    ],
)
def test_a_bad_url_is_refused_naming_why(apis, team, url, says):
    response = create_channel(apis["manager"], team, url=url)
    assert response.status_code == 400, response.json()
    assert says in response.json()["errors"]["url"][0]


@pytest.mark.parametrize("who", ["viewer", "operator", "other_team_manager"])
def test_only_the_teams_managers_see_or_change_channels(apis, team, who):
    channel = NotificationChannel.objects.create(team=team, name="chat", url=SLACK)
    api = apis[who]
    assert api.get("/api/v1/notification-channels/").json()["results"] == []
    assert api.get(f"/api/v1/notification-channels/{channel.pk}/").status_code == 404
    assert create_channel(api, team).status_code in (400, 403)
    assert api.post(f"/api/v1/notification-channels/{channel.pk}/test/").status_code == 404
    assert api.get("/api/v1/notification-deliveries/").json()["results"] == []
    assert NotificationChannel.objects.count() == 1


def test_rules_name_a_job_of_the_channels_team_and_known_events(apis, team, other_team):
    api = apis["manager"]
    channel = NotificationChannel.objects.create(team=team, name="chat", url=SLACK)
    job = Job.objects.create(team=team, name="deploy", script="true")
    foreign = Job.objects.create(team=other_team, name="theirs", script="true")
    body = {"channel": channel.pk, "job": job.pk, "events": ["failed", "recovered", "failed"]}
    response = api.post("/api/v1/notification-rules/", body, format="json")
    assert response.status_code == 201, response.json()
    assert response.json()["events"] == ["failed", "recovered"]
    assert response.json()["after_failures"] == 3
    default = {
        "channel": channel.pk,
        "job": None,
        "events": ["failed_in_a_row"],
        "after_failures": 5,
    }
    assert api.post("/api/v1/notification-rules/", default, format="json").status_code == 201
    refused = api.post(
        "/api/v1/notification-rules/", {**body, "job": foreign.pk}, format="json"
    ).json()
    assert "job" in refused["errors"]
    unknown = api.post(
        "/api/v1/notification-rules/", {**body, "events": ["exploded"]}, format="json"
    ).json()
    assert "events" in unknown["errors"]
    too_many = api.post(
        "/api/v1/notification-rules/", {**default, "after_failures": 0}, format="json"
    ).json()
    assert "after_failures" in too_many["errors"]
    assert NotificationRule.objects.count() == 2
    assert apis["operator"].get("/api/v1/notification-rules/").json()["results"] == []


def test_the_delivery_log_lists_each_attempt_and_answer(apis, team):
    channel = NotificationChannel.objects.create(team=team, name="chat", url=SLACK)
    delivery = Delivery.objects.create(
        channel=channel, event="failed", title="t", body="b", status=Delivery.Status.PENDING
    )
    DeliveryAttempt.objects.create(delivery=delivery, number=1, ok=False, answer="HTTP 500")
    listed = apis["manager"].get(f"/api/v1/notification-deliveries/?channel={channel.pk}")
    [shown] = listed.json()["results"]
    assert shown["status"] == "pending"
    assert [(a["number"], a["ok"], a["answer"]) for a in shown["attempt_log"]] == [
        (1, False, "HTTP 500")
    ]
    assert (
        apis["other_team_manager"].get("/api/v1/notification-deliveries/").json()["results"] == []
    )
