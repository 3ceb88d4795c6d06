"""Edge cases found by attacking the notifications: each test is named for the behaviour it
proves; its docstring says what went wrong before (each failed then)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.models import ApiToken, Role, Source
from executions import reactions, retries, services
from executions.models import Execution, ExecutionEvent, Status
from executions.tests.helpers import start
from jobs import services as job_services
from notifications import destinations, planning, sending
from notifications.models import Delivery, DeliveryAttempt, Event, NotificationRule
from notifications.tests.helpers import make_channel
from notifications.tests.test_planning import events_of, finish

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]


def api_as(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {ApiToken.issue(user, 'test')[1]}")
    client.raise_request_exception = False
    return client


@pytest.fixture
def job(make_server, make_job):
    return make_job("true\n", [make_server(name="web-1")], name="deploy")


# --- secrets ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "token"),
    [
        # apprise's json://, form:// and xml:// send `+Header=value` as HTTP headers: the usual
        # place of an API key. A value with a space or a reserved character is percent-encoded.
        ("json://hooks.example.test/in?+Authorization=Bearer%20s3cr3tT0kenValue42", "s3cr3tT0ken"),
        ("xml://hooks.example.test/in?+X-Api-Key=Key%3Ds3cr3tT0kenValue42", "s3cr3tT0ken"),
        ("form://hooks.example.test/in?:token=s3cr3t%20T0kenValue42", "T0kenValue42"),
    ],
)
def test_a_header_token_with_an_encoded_character_is_hidden_in_the_destination(
    make_member, team, url, token
):
    api = api_as(make_member(team, Role.MANAGER))
    created = api.post(
        "/api/v1/notification-channels/",
        {"team": team.pk, "name": "hook", "url": url},
        format="json",
    )
    assert created.status_code == 201, created.content
    shown = api.get(f"/api/v1/notification-channels/{created.json()['id']}/").json()
    assert token not in shown["destination"]
    assert token not in destinations.shown_url(url)


def test_a_query_token_the_destination_echoes_is_blanked_in_the_log(team, job, http_receiver):
    """Answers are scrubbed of the URL's parts as written and as decoded, but a query value
    is only taken decoded (parse_qsl): its percent-encoded form, the one on the wire and in
    a destination's "bad signature for /hook?sig=..." answer, stays in the delivery log, the
    channel's last_error and the dashboard."""
    token = "AbCdEf%2BGhIjKlMnOp%3D"
    url = f"{http_receiver.url}/hook?sig={token}"
    http_receiver.answers.append((403, f"no such signature: /hook?sig={token}".encode()))
    channel = make_channel(team, url, Event.FAILED, name="signed")
    finish(start(job), Status.FAILED)
    reactions.process_events()
    [attempt] = sending.send_due()
    channel.refresh_from_db()
    assert "GhIjKlMnOp" not in attempt.answer
    assert "GhIjKlMnOp" not in channel.last_error


# --- crashes on odd input ---------------------------------------------------------------


@pytest.mark.parametrize("url", ["http://[::1/hook", "https://[not-an-address]/hook"])
def test_an_unparseable_http_url_is_refused_not_a_server_error(make_member, team, url):
    manager = make_member(team, Role.MANAGER)
    api = api_as(manager)
    response = api.post(
        "/api/v1/notification-channels/",
        {"team": team.pk, "name": "hook", "url": url},
        format="json",
    )
    assert response.status_code == 400

    page = Client(raise_request_exception=False)
    page.force_login(manager)
    response = page.post(
        "/notifications/new/", {"team": team.pk, "name": "hook", "new_url": url, "enabled": "on"}
    )
    assert response.status_code == 200  # the form again, saying why


def test_a_destination_answering_with_a_nul_character_is_logged_postgresql(
    team, job, http_receiver
):
    """PostgreSQL refuses NUL in text: recording the answer raises DataError out of
    sending.attempt, the delivery stays `sending` (later `interrupted`: a retryable failure
    is never retried, and the channel never shows as failing). SQLite stores it, so this
    fails on PostgreSQL only."""
    http_receiver.answers.extend([(500, b"bad\x00gateway"), (500, b"bad\x00gateway")])
    channel = make_channel(team, http_receiver.url + "/hook", Event.FAILED)
    finish(start(job), Status.FAILED)
    reactions.process_events()
    delivery = Delivery.objects.get(channel=channel)
    try:
        sending.send_due()
    finally:
        delivery.refresh_from_db()
    assert delivery.status == Delivery.Status.PENDING
    assert DeliveryAttempt.objects.get(delivery=delivery).ok is False


def test_a_test_message_answered_with_a_nul_character_is_shown_postgresql(
    make_member, team, http_receiver
):
    """The same on the "send a test message" action: the DataError reaches the API's
    exception handler, which answers 400 "A value in the request is out of range", and the
    test delivery stays `sending` until it is marked interrupted."""
    http_receiver.answers.append((400, b"bad\x00request"))
    channel = make_channel(team, http_receiver.url + "/hook", Event.FAILED, name="hook")
    api = api_as(make_member(team, Role.MANAGER))
    response = api.post(f"/api/v1/notification-channels/{channel.pk}/test/")
    assert response.status_code == 200
    assert response.json()["ok"] is False


# --- at most once -----------------------------------------------------------------------


def test_a_destination_that_answers_too_late_is_not_sent_the_message_twice(
    team, job, http_receiver, settings
):
    """A read timeout means the destination has the message (it may well have acted on it):
    whether it arrived is unknown, as with a worker that died mid-send. Retrying it sends a
    second copy; an apprise destination (json://, mailto://, slack://, ...) has no webhook-id
    to drop it by."""
    settings.NOTIFICATION_TIMEOUT_SECONDS = 1
    url = http_receiver.url.replace("http://", "json://") + "/hook"
    channel = make_channel(team, url, Event.FAILED)
    finish(start(job), Status.FAILED)
    reactions.process_events()
    delivery = Delivery.objects.get(channel=channel)
    http_receiver.hold.set()
    [first] = sending.send_due()
    assert first.ok is False
    http_receiver.wait_for(1)
    http_receiver.hold.clear()
    http_receiver.release.set()
    delivery.refresh_from_db()
    if delivery.status == Delivery.Status.PENDING:
        sending.send_due(now=delivery.next_attempt_at)
    assert len(http_receiver.requests) == 1


# --- lost and wrong notifications --------------------------------------------------------


def test_a_failed_run_whose_retry_was_missed_is_told_as_failed(team, job):
    """A scheduled run's retry must start within the schedule's deadline; a retry no worker
    started in time ends as `missed`. The run failed and was never run again, yet a channel
    that hears of failures is told nothing (its first attempt was "retried"), and the failure
    vanishes from the run of failures."""
    job.retry_attempts = 1
    job.save()
    channel = make_channel(team, "json://127.0.0.1:9/failed", Event.FAILED)
    first = finish(start(job), Status.FAILED)
    reactions.process_events()
    first.refresh_from_db()
    [retry_id] = retries.start_due_retries(now=first.retry_due_at)
    # As _start_by gives a scheduled run's retry; every worker was busy until past it.
    Execution.objects.filter(pk=retry_id).update(start_by=timezone.now() - timedelta(minutes=1))
    assert services.claim_execution(retry_id, "late-worker") is None
    assert Execution.objects.get(pk=retry_id).status == Status.MISSED
    reactions.process_events()
    assert events_of(channel) == [Event.FAILED]


def test_a_failed_attempt_whose_retry_is_not_planned_yet_does_not_count_as_a_failure(team, job):
    """Two workers process events at once: one holds run B's failure (its retry not yet
    planned) while the other plans run A's last attempt, which then counts B's first attempt as
    a failure before it. Both A and, later, B are told "failed 2 times in a row"."""
    job.retry_attempts = 1
    job.save()
    channel = make_channel(team, "json://127.0.0.1:9/row", Event.FAILED_IN_A_ROW, after_failures=2)
    a1 = finish(start(job), Status.FAILED)
    reactions.process_events()
    a1.refresh_from_db()
    [a2_id] = retries.start_due_retries(now=a1.retry_due_at)
    b1 = finish(start(job), Status.FAILED)
    a2 = finish(Execution.objects.get(pk=a2_id), Status.FAILED)
    # The other worker's processor has B1's event leased; this one takes A2's.
    planning.plan_notifications(ExecutionEvent.objects.get(execution=a2, kind=Status.FAILED))
    reactions.process_events()
    b1.refresh_from_db()
    [b2_id] = retries.start_due_retries(now=b1.retry_due_at)
    finish(Execution.objects.get(pk=b2_id), Status.FAILED)
    reactions.process_events()
    # Two runs failed: the second of them is the 2nd failure in a row, once.
    assert events_of(channel) == [Event.FAILED_IN_A_ROW]


def test_a_disabled_channel_is_not_shown_as_failing(team, job, make_member):
    """Deliveries planned before the channel was disabled are refused by the sender as
    failures, which marks the channel failing: the dashboard then says notifications are not
    getting through to a channel its managers turned off."""
    channel = make_channel(team, "json://127.0.0.1:9/off", Event.FAILED)
    finish(start(job), Status.FAILED)
    reactions.process_events()
    channel.enabled = False
    channel.save()
    sending.send_due()
    channel.refresh_from_db()
    assert channel.failing_since is None
    page = Client()
    page.force_login(make_member(team, Role.MANAGER))
    assert b"failing-channels" not in page.get("/").content


# --- permissions and teams --------------------------------------------------------------


def test_the_delivery_log_filter_does_not_tell_other_teams_executions_apart(
    make_member, team, other_team, make_server, make_job
):
    """tsubame.policy.visible_to_request exists so that another team's id is as unknown as
    one that does not exist; the `execution` filter of the delivery log uses every execution."""
    theirs = make_job("true\n", [make_server(team=other_team, name="theirs")], team=other_team)
    their_run = start(theirs)
    api = api_as(make_member(team, Role.MANAGER))
    other = api.get(f"/api/v1/notification-deliveries/?execution={their_run.pk}")
    nothing = api.get("/api/v1/notification-deliveries/?execution=987654321")
    assert other.status_code == nothing.status_code


def test_a_job_moved_to_another_team_leaves_no_rule_of_its_old_team(
    team, other_team, job, make_server, make_member
):
    """Rules name jobs of their channel's team (the API, the UI and the admin refuse any
    other). A job moved to another team keeps its old team's rules: their managers go on seeing
    a job of a team they are not in (name, link) and the rule names another team's job."""
    channel = make_channel(team, "json://127.0.0.1:9/own", Event.FAILED, job=job, name="own")
    job.team = other_team
    job_services.save_job(
        job,
        actor=None,
        source=Source.SYSTEM,
        servers=[make_server(team=other_team, name="there")],
        changed_fields=["team", "servers"],
    )
    page = Client()
    page.force_login(make_member(team, Role.MANAGER))
    shown = page.get(f"/notifications/{channel.pk}/").content
    assert b"deploy" not in shown
    assert not NotificationRule.objects.filter(channel=channel, job=job).exists()
