"""Webhooks on the job's page and their own pages: managers only, the secret shown once.

The autouse `secret_watch` fixture (conftest.py) fails any test here whose responses show a
webhook's secret anywhere but on the page that answers its creation or rotation.
"""

from __future__ import annotations

import base64

import pytest
from django.test import Client

from accounts.models import AuditEvent, Role, Source
from jobs.models import Job, Webhook, WebhookDelivery
from jobs.parameters import clean_definitions
from jobs.services import save_webhook

pytestmark = [pytest.mark.django_db, pytest.mark.timeout(60)]


@pytest.fixture
def job(team) -> Job:
    return Job.objects.create(
        team=team, name="deploy", script="true", parameters=clean_definitions([{"name": "REF"}])
    )


@pytest.fixture
def webhook(job) -> Webhook:
    return save_webhook(Webhook(job=job, name="push"), actor=None, source=Source.SYSTEM)


@pytest.fixture
def personas(make_member, team, other_team, superuser) -> dict[str, Client]:
    users = {
        "viewer": make_member(team, Role.VIEWER),
        "operator": make_member(team, Role.OPERATOR),
        "manager": make_member(team, Role.MANAGER),
        "other_team_manager": make_member(other_team, Role.MANAGER),
        "superuser": superuser,
    }
    clients = {"anonymous": Client()}
    for persona, user in users.items():
        clients[persona] = Client()
        clients[persona].force_login(user)
    return clients


@pytest.mark.parametrize(
    ("persona", "section", "new", "edit", "rotate", "deliveries"),
    [
        ("anonymous", None, 302, 302, 302, 302),
        ("viewer", False, 403, 404, 404, 404),
        ("operator", False, 403, 404, 404, 404),
        ("manager", True, 200, 200, 200, 200),
        ("other_team_manager", None, 404, 404, 404, 404),
        ("superuser", True, 200, 200, 200, 200),
    ],
)
def test_who_sees_and_changes_webhooks(
    personas, job, webhook, persona, section, new, edit, rotate, deliveries
):
    client = personas[persona]
    page = client.get(f"/jobs/{job.pk}/")
    if section is not None:
        assert page.status_code == 200
        assert (b'id="webhooks"' in page.content) is section
        assert (webhook.key.encode() in page.content) is section
    assert client.get(f"/jobs/{job.pk}/webhooks/new/").status_code == new
    assert client.get(f"/jobs/webhooks/{webhook.pk}/edit/").status_code == edit
    assert client.get(f"/jobs/webhooks/{webhook.pk}/rotate/").status_code == rotate
    assert client.get(f"/jobs/webhooks/{webhook.pk}/deliveries/").status_code == deliveries
    assert client.get(f"/jobs/webhooks/{webhook.pk}/delete/").status_code == edit


def test_a_manager_creates_a_webhook_and_sees_its_secret_once(personas, job):
    client = personas["manager"]
    response = client.post(
        f"/jobs/{job.pk}/webhooks/new/",
        {
            "name": "push",
            "mode": "github",
            "parameter_map": '{"REF": "ref"}',
            "filter_path": "ref",
            "filter_value": "refs/heads/main",
            "rate_limit_per_minute": 30,
            "enabled": "on",
        },
    )
    assert response.status_code == 200
    webhook = Webhook.objects.get()
    assert webhook.secret.encode() in response.content
    assert b"not shown again" in response.content
    assert webhook.key.encode() in response.content
    assert (webhook.mode, webhook.parameter_map) == ("github", {"REF": "ref"})
    page = client.get(f"/jobs/{job.pk}/")  # the watch fails the test if it shows the secret
    assert webhook.secret.encode() not in page.content
    assert AuditEvent.objects.get(action="create", object_type="jobs.webhook").source == "ui"


def test_the_form_refuses_unknown_parameters_and_bad_paths(personas, job):
    response = personas["manager"].post(
        f"/jobs/{job.pk}/webhooks/new/",
        {
            "name": "push",
            "mode": "standard",
            "parameter_map": '{"NOPE": "ref"}',
            "filter_path": "a..b",
            "rate_limit_per_minute": 60,
        },
    )
    assert response.status_code == 200
    assert b"has no parameter NOPE" in response.content
    assert b"is not a dotted path" in response.content
    assert not Webhook.objects.exists()


def test_rotating_shows_the_new_secret_once_and_retiring_ends_the_old(personas, webhook):
    client = personas["manager"]
    old = webhook.secret
    response = client.post(f"/jobs/webhooks/{webhook.pk}/rotate/")
    webhook.refresh_from_db()
    assert webhook.secret != old
    assert webhook.previous_secret == old
    assert webhook.secret.encode() in response.content
    assert b"previous secret is still accepted" in response.content
    page = client.get(f"/jobs/{webhook.job_id}/")
    assert b"Retire previous secret" in page.content
    client.post(f"/jobs/webhooks/{webhook.pk}/retire/")
    webhook.refresh_from_db()
    assert webhook.previous_secret is None


def test_the_deliveries_page_lists_them_with_their_runs(personas, webhook):
    WebhookDelivery.objects.create(
        webhook=webhook, delivery_id="abc-1", status_code=401, reason="No signature matches."
    )
    page = personas["manager"].get(f"/jobs/webhooks/{webhook.pk}/deliveries/")
    assert b"abc-1" in page.content
    assert b"No signature matches." in page.content


def test_deleting_a_webhook_keeps_the_job(personas, webhook):
    response = personas["manager"].post(f"/jobs/webhooks/{webhook.pk}/delete/")
    assert response.status_code == 302
    assert not Webhook.objects.exists()
    assert Job.objects.filter(pk=webhook.job_id).exists()


def test_the_admin_takes_a_secret_but_never_shows_it(personas, job):
    client = personas["superuser"]
    secret = "whsec_" + base64.b64encode(b"s" * 32).decode()
    response = client.post(
        "/admin/jobs/webhook/add/",
        {
            "job": job.pk,
            "name": "from-admin",
            "mode": "standard",
            "parameter_map": "{}",
            "rate_limit_per_minute": 60,
            "enabled": "on",
            "new_secret": secret,
        },
    )
    assert response.status_code == 302, response.content
    webhook = Webhook.objects.get()
    assert webhook.secret == secret
    change = client.get(f"/admin/jobs/webhook/{webhook.pk}/change/")
    assert change.status_code == 200
    assert secret.encode() not in change.content
    refused = client.post(
        "/admin/jobs/webhook/add/",
        {
            "job": job.pk,
            "name": "weak",
            "mode": "standard",
            "parameter_map": "{}",
            "rate_limit_per_minute": 60,
            "new_secret": "whsec_c2hvcnQ=",
        },
    )
    assert b"at least 24 random bytes" in refused.content
