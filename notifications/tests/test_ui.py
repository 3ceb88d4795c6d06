"""Notification channels and rules in the web UI: managers only, the URL write-only, the
test message's answer shown, and failing channels on the dashboard.

Destinations are the `http_receiver` of notifications/tests/conftest.py, on 127.0.0.1; the
other URLs here are never sent to. The autouse `secret_watch` (conftest.py) fails any test
whose responses show a stored secret; each test also looks for the URL itself.
"""

from __future__ import annotations

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.models import AuditEvent, Role, Source
from jobs.models import Job
from notifications import services
from notifications.models import Delivery, Event, NotificationChannel, NotificationRule
from notifications.tests.helpers import HOOK_URL

pytestmark = [pytest.mark.django_db, pytest.mark.timeout(60)]


@pytest.fixture
def job(team) -> Job:
    return Job.objects.create(team=team, name="deploy", script="true")


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


def assert_url_hidden(content: bytes, url: str) -> None:
    text = content.decode()
    assert url not in text
    assert url.rsplit("/", 1)[-1] not in text  # its token


@pytest.mark.parametrize(
    ("persona", "nav", "listed", "new", "page"),
    [
        ("anonymous", None, 302, 302, 302),
        ("viewer", False, 403, 403, 404),
        ("operator", False, 403, 403, 404),
        ("manager", True, 200, 200, 200),
        ("other_team_manager", True, 200, 200, 404),
        ("superuser", True, 200, 200, 200),
    ],
)
def test_who_sees_and_changes_channels(personas, channel, persona, nav, listed, new, page):
    client = personas[persona]
    if nav is not None:
        dashboard = client.get("/").content.decode()
        assert ('href="/notifications/"' in dashboard) is nav
    response = client.get("/notifications/")
    assert response.status_code == listed
    if listed == 200:
        shown = persona in ("manager", "superuser")
        assert (b"ops-hook" in response.content) is shown
    assert client.get("/notifications/new/").status_code == new
    assert client.get(f"/notifications/{channel.pk}/").status_code == page
    assert client.get(f"/notifications/{channel.pk}/edit/").status_code == page
    assert client.get(f"/notifications/{channel.pk}/delete/").status_code == page
    assert client.get(f"/notifications/{channel.pk}/rotate/").status_code == page
    assert client.get(f"/notifications/{channel.pk}/rules/new/").status_code == page


@pytest.mark.parametrize("persona", ["viewer", "operator", "other_team_manager"])
def test_who_may_not_see_a_channel_cannot_change_test_or_delete_it(personas, channel, persona):
    client = personas[persona]
    edit = {"team": channel.team_id, "name": "renamed", "new_url": "https://evil.example.test/"}
    assert client.post(f"/notifications/{channel.pk}/edit/", edit).status_code == 404
    assert client.post(f"/notifications/{channel.pk}/test/").status_code == 404
    assert client.post(f"/notifications/{channel.pk}/rotate/").status_code == 404
    assert client.post(f"/notifications/{channel.pk}/delete/").status_code == 404
    rule = {"events": [Event.FAILED], "after_failures": 3, "enabled": "on"}
    assert client.post(f"/notifications/{channel.pk}/rules/new/", rule).status_code == 404
    channel.refresh_from_db()
    assert (channel.name, channel.url) == ("ops-hook", HOOK_URL)
    assert not Delivery.objects.exists()
    assert not NotificationRule.objects.exists()


def test_a_manager_adds_a_signed_channel_and_sees_its_secret_once(personas, team):
    client = personas["manager"]
    response = client.post(
        "/notifications/new/",
        {"team": team.pk, "name": "ops-hook", "new_url": HOOK_URL, "enabled": "on"},
    )
    assert response.status_code == 200
    channel = NotificationChannel.objects.get()
    assert (channel.team, channel.url, channel.enabled) == (team, HOOK_URL, True)
    assert channel.signing_secret.startswith("whsec_")
    assert channel.signing_secret.encode() in response.content
    assert b"not shown again" in response.content
    assert_url_hidden(response.content, HOOK_URL)
    audit = AuditEvent.objects.get(action="create", object_type="notifications.notificationchannel")
    assert audit.source == Source.UI
    for url in (
        "/notifications/",
        f"/notifications/{channel.pk}/",
        f"/notifications/{channel.pk}/edit/",
    ):
        page = client.get(url)
        assert page.status_code == 200
        assert_url_hidden(page.content, HOOK_URL)
        assert channel.signing_secret.encode() not in page.content
        assert b"https://hooks.example.test/\xe2\x80\xa6" in page.content  # where, not the URL


def test_an_apprise_channel_has_no_secret_and_shows_its_service_with_tokens_hidden(personas, team):
    url = "json://hooks.example.test/incoming/T0K3N-abcdef-654321"
    response = personas["manager"].post(
        "/notifications/new/", {"team": team.pk, "name": "json", "new_url": url}
    )
    channel = NotificationChannel.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"/notifications/{channel.pk}/"
    assert (channel.url, channel.signing_secret, channel.enabled) == (url, None, False)
    page = personas["manager"].get(response["Location"])
    assert_url_hidden(page.content, url)
    assert b"json://" in page.content
    assert b"Rotate signing secret" not in page.content
    # Rotating asks for an http(s):// channel and makes nothing.
    personas["manager"].post(f"/notifications/{channel.pk}/rotate/")
    channel.refresh_from_db()
    assert channel.signing_secret is None


def test_an_empty_url_keeps_the_current_one_and_a_new_one_replaces_it(personas, channel):
    client = personas["manager"]
    form = {"team": channel.team_id, "name": "renamed", "new_url": ""}
    response = client.post(f"/notifications/{channel.pk}/edit/", form)
    assert response.status_code == 302
    channel.refresh_from_db()
    assert (channel.name, channel.url, channel.enabled) == ("renamed", HOOK_URL, False)
    change = AuditEvent.objects.get(action="change")
    assert (change.source, change.details) == (Source.UI, {"fields": ["enabled", "name"]})

    other = "https://other.example.test/hooks/N3W-T0K3N-7890"
    secret = channel.signing_secret
    response = client.post(f"/notifications/{channel.pk}/edit/", form | {"new_url": other})
    assert response.status_code == 302  # still signed: the secret it has stays
    channel.refresh_from_db()
    assert (channel.url, channel.signing_secret) == (other, secret)
    assert AuditEvent.objects.filter(action="change").first().details == {"fields": ["url"]}
    assert_url_hidden(client.get(response["Location"]).content, other)


def test_the_team_of_a_channel_stays(personas, channel, other_team):
    client = personas["superuser"]
    form = {"team": other_team.pk, "name": channel.name, "enabled": "on"}
    assert client.post(f"/notifications/{channel.pk}/edit/", form).status_code == 302
    channel.refresh_from_db()
    assert channel.team_id != other_team.pk


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("", "This field is required."),
        ("hooks.example.test/T0K3N-abcdef", "A destination is a URL"),
        ("https:///T0K3N-abcdef", "This URL names no host."),
        ("https://hooks.example.test:http/T0K3N-abcdef", "cannot be read"),
        ("syslog://T0K3N-abcdef", "notifies the worker&#x27;s own machine"),
        ("nosuchservice://T0K3N-abcdef", "apprise does not understand"),
        ("https://hooks.example.test/T0K3N abcdef", "no spaces"),
    ],
)
def test_the_form_says_why_it_refuses_a_url_and_never_shows_it_back(personas, team, url, says):
    response = personas["manager"].post(
        "/notifications/new/", {"team": team.pk, "name": "bad", "new_url": url}
    )
    assert response.status_code == 200
    assert says in response.content.decode()
    assert b"T0K3N" not in response.content
    assert not NotificationChannel.objects.exists()


def test_a_manager_deletes_a_channel_with_its_rules_and_log(personas, channel):
    NotificationRule.objects.create(channel=channel, events=[Event.FAILED])
    client = personas["manager"]
    confirm = client.get(f"/notifications/{channel.pk}/delete/")
    assert b"1 rule " in confirm.content
    response = client.post(f"/notifications/{channel.pk}/delete/")
    assert response.status_code == 302
    assert response["Location"] == "/notifications/"
    assert not NotificationChannel.objects.exists()
    assert not NotificationRule.objects.exists()
    assert AuditEvent.objects.get(action="delete").source == Source.UI


def test_a_manager_adds_edits_and_deletes_rules(personas, channel, job, other_team):
    client = personas["manager"]
    page = client.get(f"/notifications/{channel.pk}/rules/new/").content.decode()
    assert "every job without a rule of its own (team default)" in page.lower()
    assert ">deploy<" in page
    response = client.post(
        f"/notifications/{channel.pk}/rules/new/",
        {"job": "", "events": [Event.RECOVERED, Event.FAILED], "after_failures": 3},
    )
    assert response.status_code == 302
    rule = NotificationRule.objects.get()
    assert (rule.channel, rule.job, rule.enabled) == (channel, None, False)
    assert rule.events == [Event.FAILED, Event.RECOVERED]  # in Event's order

    edit = {
        "job": job.pk,
        "events": [Event.FAILED_IN_A_ROW],
        "after_failures": 5,
        "enabled": "on",
    }
    assert client.post(f"/notifications/rules/{rule.pk}/edit/", edit).status_code == 302
    rule.refresh_from_db()
    assert (rule.job, rule.events, rule.after_failures, rule.enabled) == (
        job,
        [Event.FAILED_IN_A_ROW],
        5,
        True,
    )
    detail = client.get(f"/notifications/{channel.pk}/").content.decode()
    assert "Failed 5 times in a row" in detail

    elsewhere = Job.objects.create(team=other_team, name="theirs", script="true")
    refused = client.post(f"/notifications/rules/{rule.pk}/edit/", edit | {"job": elsewhere.pk})
    assert refused.status_code == 200
    assert "Select a valid choice" in refused.content.decode()
    rule.refresh_from_db()
    assert rule.job == job

    assert client.post(f"/notifications/rules/{rule.pk}/delete/").status_code == 302
    assert not NotificationRule.objects.exists()
    actions = AuditEvent.objects.filter(object_type="notifications.notificationrule")
    assert sorted(actions.values_list("action", "source")) == [
        ("change", Source.UI),
        ("create", Source.UI),
        ("delete", Source.UI),
    ]


def test_the_test_message_shows_what_a_failing_destination_answered(personas, team, http_receiver):
    url = f"{http_receiver.url}/hooks/T0K3N-abcdef-500"
    channel = services.save_channel(
        NotificationChannel(team=team, name="receiver", url=url), actor=None, source=Source.SYSTEM
    )
    http_receiver.answers.append((500, b"the receiver broke: disk full"))
    client = personas["manager"]
    response = client.post(f"/notifications/{channel.pk}/test/", follow=True)
    page = response.content.decode()
    assert response.redirect_chain == [(f"/notifications/{channel.pk}/", 302)]
    assert "did not arrive: HTTP 500 Internal Server Error: the receiver broke: disk full" in page
    assert_url_hidden(response.content, url)
    (request,) = http_receiver.requests
    assert request.path == "/hooks/T0K3N-abcdef-500"
    assert request.headers["webhook-signature"].startswith("v1,")
    # The delivery log keeps it, and the channel is failing until a message gets through.
    assert 'id="deliveries"' in page
    assert page.count("the receiver broke: disk full") >= 2
    channel.refresh_from_db()
    assert channel.failing_since is not None
    assert AuditEvent.objects.get(action="test").source == Source.UI


def test_the_test_message_says_when_it_arrived(personas, team, http_receiver):
    channel = services.save_channel(
        NotificationChannel(
            team=team,
            name="receiver",
            url=f"{http_receiver.url}/hooks/T0K3N-abcdef-204",
            failing_since=timezone.now(),
            last_error="HTTP 500 before",
        ),
        actor=None,
        source=Source.SYSTEM,
    )
    response = personas["manager"].post(f"/notifications/{channel.pk}/test/", follow=True)
    assert "The test message to receiver arrived: HTTP 204 No Content" in response.content.decode()
    channel.refresh_from_db()
    assert (channel.failing_since, channel.last_error) == (None, "")
    delivery = Delivery.objects.get()
    assert (delivery.event, delivery.status) == ("test", Delivery.Status.SENT)


def test_rotating_shows_the_new_secret_once(personas, channel):
    client = personas["manager"]
    old = channel.signing_secret
    assert b"Make a new secret" in client.get(f"/notifications/{channel.pk}/rotate/").content
    response = client.post(f"/notifications/{channel.pk}/rotate/")
    channel.refresh_from_db()
    assert channel.signing_secret != old
    assert channel.signing_secret.encode() in response.content
    assert b"no longer signs" in response.content
    page = client.get(f"/notifications/{channel.pk}/")
    assert channel.signing_secret.encode() not in page.content
    assert AuditEvent.objects.get(action="rotate_secret").source == Source.UI


def failing(channel: NotificationChannel, error: str) -> NotificationChannel:
    NotificationChannel.objects.filter(pk=channel.pk).update(
        failing_since=timezone.now(), last_error=error
    )
    return channel


def test_failing_channels_show_on_the_dashboard_of_their_managers_only(personas, channel):
    failing(channel, "HTTP 503 Service Unavailable: try later")
    for persona in ("manager", "superuser"):
        page = personas[persona].get("/").content.decode()
        assert 'id="failing-channels"' in page
        assert f'href="/notifications/{channel.pk}/"' in page
        assert "HTTP 503 Service Unavailable: try later" in page
        assert_url_hidden(page.encode(), HOOK_URL)
    for persona in ("viewer", "operator", "other_team_manager"):
        page = personas[persona].get("/").content.decode()
        assert 'id="failing-channels"' not in page
        assert "try later" not in page


def test_the_dashboard_reads_failing_channels_in_one_query(personas, team):
    client = personas["manager"]
    counts = []
    for more in (1, 4):
        for _ in range(more):
            made = NotificationChannel.objects.count()
            channel = NotificationChannel.objects.create(
                team=team, name=f"c{made}", url=f"ntfy://topic-{made}"
            )
            failing(channel, f"error {made}")
        with CaptureQueriesContext(connection) as queries:
            page = client.get("/").content.decode()
        assert page.count('href="/notifications/') - 1 == NotificationChannel.objects.count()
        reads = [q["sql"] for q in queries.captured_queries if "notificationchannel" in q["sql"]]
        assert len(reads) == 1, reads
        counts.append(len(queries.captured_queries))
    assert counts[0] == counts[1]
