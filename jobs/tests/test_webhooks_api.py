"""Webhooks in the API: managers only, the secret shown once, deliveries listed per webhook.

The autouse `secret_watch` fixture (conftest.py) fails any test here whose responses show a
webhook's secret anywhere but in the response that created or rotated it.
"""

from __future__ import annotations

import json

import pytest
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient
from standardwebhooks.webhooks import Webhook as Signer

from accounts.models import ApiToken, AuditEvent, Role
from jobs import webhooks
from jobs.models import Job, Webhook, WebhookDelivery
from jobs.parameters import clean_definitions

pytestmark = [pytest.mark.django_db, pytest.mark.timeout(60)]


def api_as(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {ApiToken.issue(user, 'test')[1]}")
    return client


@pytest.fixture
def job(team) -> Job:
    return Job.objects.create(
        team=team,
        name="deploy",
        script="true",
        parameters=clean_definitions([{"name": "REF"}]),
    )


@pytest.fixture
def apis(make_member, team, other_team, superuser) -> dict[str, APIClient]:
    return {
        "viewer": api_as(make_member(team, Role.VIEWER)),
        "operator": api_as(make_member(team, Role.OPERATOR)),
        "manager": api_as(make_member(team, Role.MANAGER)),
        "other_team_manager": api_as(make_member(other_team, Role.MANAGER)),
        "superuser": api_as(superuser),
    }


def create(api: APIClient, job: Job, **fields: object):
    body = {"job": job.pk, "name": "push", "parameter_map": {"REF": "ref"}} | fields
    return api.post("/api/v1/webhooks/", body, format="json")


def test_a_manager_creates_a_webhook_and_sees_its_secret_once(apis, job):
    api = apis["manager"]
    response = create(api, job, filter_path="ref", filter_value="refs/heads/main")
    assert response.status_code == 201, response.json()
    created = response.json()
    webhook = Webhook.objects.get()
    assert created["secret"] == webhook.secret
    assert created["secret"].startswith("whsec_")
    assert created["url"] == f"http://testserver/hooks/{webhook.key}/"
    assert set(created) == {
        "id",
        "job",
        "name",
        "mode",
        "parameter_map",
        "filter_path",
        "filter_value",
        "rate_limit_per_minute",
        "enabled",
        "url",
        "has_previous_secret",
        "created_at",
        "secret",
    }
    # Never again: not in the list, the object, a change (the secret watch checks too).
    assert "secret" not in api.get(f"/api/v1/webhooks/{webhook.pk}/").json()
    assert "secret" not in api.get("/api/v1/webhooks/").json()["results"][0]
    changed = api.patch(f"/api/v1/webhooks/{webhook.pk}/", {"enabled": False}, format="json")
    assert changed.status_code == 200
    assert "secret" not in changed.json()
    event = AuditEvent.objects.get(action="create", object_type="jobs.webhook")
    assert webhook.secret not in json.dumps(event.details)


def test_rotating_returns_the_new_secret_once_and_retiring_drops_the_old(apis, job):
    api = apis["manager"]
    first = create(api, job).json()
    rotated = api.post(f"/api/v1/webhooks/{first['id']}/rotate-secret/")
    assert rotated.status_code == 200
    assert rotated.json()["secret"] not in (None, first["secret"])
    assert rotated.json()["has_previous_secret"] is True
    webhook = Webhook.objects.get()
    assert (webhook.secret, webhook.previous_secret) == (rotated.json()["secret"], first["secret"])
    retired = api.post(f"/api/v1/webhooks/{first['id']}/retire-previous-secret/")
    assert retired.status_code == 200
    assert retired.json()["has_previous_secret"] is False
    assert "secret" not in retired.json()
    assert Webhook.objects.get().previous_secret is None


@pytest.mark.parametrize(
    ("persona", "create_status", "listed", "detail", "rotate"),
    [
        ("viewer", 403, 0, 404, 404),
        ("operator", 403, 0, 404, 404),
        ("other_team_manager", 400, 0, 404, 404),  # the job does not exist for them
        ("manager", 201, 2, 200, 200),
        ("superuser", 201, 2, 200, 200),
    ],
)
def test_only_the_teams_managers_see_and_change_webhooks(
    apis, job, persona, create_status, listed, detail, rotate
):
    existing = create(apis["manager"], job, name="existing").json()["id"]
    api = apis[persona]
    assert create(api, job).status_code == create_status
    assert len(api.get("/api/v1/webhooks/").json()["results"]) == listed
    assert api.get(f"/api/v1/webhooks/{existing}/").status_code == detail
    assert api.post(f"/api/v1/webhooks/{existing}/rotate-secret/").status_code == rotate
    expected_delete = 204 if detail == 200 else 404
    assert api.delete(f"/api/v1/webhooks/{existing}/").status_code == expected_delete


def test_the_parameter_map_names_the_jobs_parameters_and_paths_are_checked(apis, job):
    api = apis["manager"]
    response = create(api, job, parameter_map={"NOPE": "ref"})
    assert response.status_code == 400
    assert "no parameter NOPE" in str(response.json()["errors"]["parameter_map"])
    response = create(api, job, parameter_map={"REF": "a..b"})
    assert "not a dotted path" in str(response.json()["errors"]["parameter_map"])
    response = create(api, job, filter_path="ref.")
    assert "not a dotted path" in str(response.json()["errors"]["filter_path"])
    assert not Webhook.objects.exists()


def test_a_webhook_stays_with_its_job(apis, job, team):
    api = apis["manager"]
    hook = create(api, job).json()
    other = Job.objects.create(team=team, name="other", script="true")
    response = api.patch(f"/api/v1/webhooks/{hook['id']}/", {"job": other.pk}, format="json")
    assert response.status_code == 400


def deliver(url: str, secret: str, msg_id: str) -> int:
    body = json.dumps({"ref": "main"})
    signature = Signer(secret).sign(msg_id, timezone.now(), body)
    headers = {
        "HTTP_WEBHOOK_ID": msg_id,
        "HTTP_WEBHOOK_TIMESTAMP": str(int(timezone.now().timestamp())),
        "HTTP_WEBHOOK_SIGNATURE": signature,
    }
    return Client().post(url, body, content_type="application/json", **headers).status_code


def test_deliveries_are_listed_per_webhook_for_managers_only(apis, job, monkeypatch):
    monkeypatch.setattr(webhooks, "LISTED_DELIVERIES", 3)
    api = apis["manager"]
    one, two = create(api, job, name="one").json(), create(api, job, name="two").json()
    Job.objects.filter(pk=job.pk).update(enabled=False)  # the runs need no servers
    for i in range(4):
        deliver(one["url"], one["secret"], f"one-{i}")
    deliver(two["url"], "whsec_" + "A" * 43, "two-0")
    listed = api.get("/api/v1/webhook-deliveries/", {"webhook": one["id"]}).json()["results"]
    assert [d["delivery_id"] for d in listed] == ["one-3", "one-2", "one-1"]
    assert listed[0]["status_code"] == 409  # the job is disabled
    everything = api.get("/api/v1/webhook-deliveries/").json()["results"]
    assert len(everything) == 4  # three of one, one of two
    assert WebhookDelivery.objects.count() == 5
    for persona in ("viewer", "operator", "other_team_manager"):
        assert apis[persona].get("/api/v1/webhook-deliveries/").json()["results"] == []
