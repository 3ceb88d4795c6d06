"""The outbox: each delivery sent at most once, failures retried with back-off and logged."""

from __future__ import annotations

import json
import os
import signal
import sys
from datetime import timedelta

import pytest
from cryptography.fernet import Fernet
from django.utils import timezone
from rest_framework.test import APIClient
from standardwebhooks.webhooks import Webhook as StandardVerifier
from standardwebhooks.webhooks import WebhookVerificationError

from accounts.models import ApiToken, Role
from executions import reactions
from executions.models import Status
from executions.tests.helpers import start, wait_until
from notifications import sending
from notifications.models import Delivery, DeliveryAttempt, Event
from notifications.services import new_signing_secret
from notifications.tests.helpers import make_channel
from notifications.tests.test_planning import finish
from tsubame.tests.processes import app_environment, spawn, stop

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]


@pytest.fixture
def job(make_server, make_job):
    return make_job("true\n", [make_server(name="web-1")], name="deploy")


def one_delivery(team, job, url: str) -> Delivery:
    channel = make_channel(team, url, Event.FAILED)
    finish(start(job), Status.FAILED)
    reactions.process_events()
    return Delivery.objects.get(channel=channel)


def answers(delivery: Delivery) -> list[tuple[bool | None, str]]:
    return [(a.ok, a.answer) for a in delivery.attempt_log.order_by("number")]


def test_a_failing_destination_is_retried_with_back_off_and_the_log_says_why(
    team, job, http_receiver
):
    http_receiver.answers.extend([(500, b"database is down"), (503, b"")])
    delivery = one_delivery(team, job, http_receiver.url + "/hook")
    start_time = timezone.now()
    [first] = sending.send_due(now=start_time)
    assert first.ok is False
    delivery.refresh_from_db()
    assert delivery.status == Delivery.Status.PENDING
    assert delivery.next_attempt_at >= start_time + timedelta(minutes=1)
    channel = delivery.channel
    channel.refresh_from_db()
    assert channel.failing_since is not None
    assert channel.last_error == "HTTP 500 Internal Server Error: database is down"
    # Not before its time; then the second attempt (503), then the third gets through.
    assert sending.send_due(now=delivery.next_attempt_at - timedelta(seconds=1)) == []
    sending.send_due(now=delivery.next_attempt_at)
    delivery.refresh_from_db()
    sending.send_due(now=delivery.next_attempt_at)
    delivery.refresh_from_db()
    assert delivery.status == Delivery.Status.SENT
    assert answers(delivery) == [
        (False, "HTTP 500 Internal Server Error: database is down"),
        (False, "HTTP 503 Service Unavailable"),
        (True, "HTTP 204 No Content"),
    ]
    channel.refresh_from_db()
    assert (channel.failing_since, channel.last_error) == (None, "")
    # Every attempt at one delivery carries the same id, so a receiver can drop repeats.
    ids = {request.headers["webhook-id"] for request in http_receiver.requests}
    assert ids == {delivery.message_id}


def test_five_failed_attempts_over_about_an_hour_and_then_it_has_failed(team, job, http_receiver):
    http_receiver.answers.extend([(500, b"no")] * 6)
    delivery = one_delivery(team, job, http_receiver.url)
    first_at = now = timezone.now()
    while True:
        made = sending.send_due(now=now)
        delivery.refresh_from_db()
        if delivery.status != Delivery.Status.PENDING:
            break
        assert len(made) == 1
        now = delivery.next_attempt_at
    assert delivery.status == Delivery.Status.FAILED
    assert delivery.attempts == sending.MAX_ATTEMPTS == 5
    assert len(http_receiver.requests) == 5
    assert timedelta(minutes=50) <= now - first_at <= timedelta(minutes=70)
    assert sending.send_due(now=now + timedelta(days=1)) == []


def test_the_outgoing_webhook_signature_verifies_and_a_tampered_one_does_not(
    team, job, http_receiver
):
    delivery = one_delivery(team, job, http_receiver.url + "/in?x=1")
    sending.send_due()
    [request] = http_receiver.wait_for(1)
    assert request.path == "/in?x=1"
    secret = delivery.channel.signing_secret
    payload = StandardVerifier(secret).verify(request.body, request.headers)
    assert payload["type"] == "execution.failed"
    assert payload["data"]["execution"]["id"] == delivery.execution_id
    with pytest.raises(WebhookVerificationError):
        StandardVerifier(secret).verify(
            request.body.replace(b"failed", b"succeeded"), request.headers
        )
    with pytest.raises(WebhookVerificationError):
        StandardVerifier(new_signing_secret()).verify(request.body, request.headers)


def test_an_apprise_destination_that_fails_is_logged_without_its_token(team, job, http_receiver):
    http_receiver.answers.append((500, b"boom"))
    token = "tok3n-abcdefghijklmnop"
    delivery = one_delivery(
        team, job, f"json://127.0.0.1:{http_receiver.url.rsplit(':', 1)[1]}/{token}"
    )
    [attempt] = sending.send_due()
    assert attempt.ok is False
    assert "500" in attempt.answer
    assert token not in attempt.answer
    [request] = http_receiver.wait_for(1)
    assert request.path == f"/{token}"
    body = json.loads(request.body)
    assert body["title"] == delivery.title


def test_two_senders_claiming_at_once_make_one_attempt(team, job, http_receiver):
    delivery = one_delivery(team, job, http_receiver.url)
    now = timezone.now()
    # Both read it as due before either claims it.
    assert sending.due(now) == [delivery.pk]
    assert sending.claim(delivery.pk, now) is not None
    assert sending.claim(delivery.pk, now) is None
    assert DeliveryAttempt.objects.filter(delivery=delivery).count() == 1


def test_a_destination_no_key_decrypts_fails_at_once_without_retries(
    team, job, http_receiver, settings
):
    delivery = one_delivery(team, job, http_receiver.url)
    # Stored under a key that is no longer configured.
    settings.ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    [attempt] = sending.send_due()
    delivery.refresh_from_db()
    assert delivery.status == Delivery.Status.FAILED
    assert "no key in ENCRYPTION_KEYS decrypts" in attempt.answer
    assert http_receiver.requests == []


@pytest.mark.real_queue
@pytest.mark.timeout(180)
def test_a_worker_killed_mid_send_causes_no_duplicate(team, job, http_receiver, settings):
    http_receiver.hold.set()  # the destination takes the request and does not answer
    delivery = one_delivery(team, job, http_receiver.url)
    log = settings.DATA_DIR / "test-notify-worker.log"
    worker = spawn([sys.executable, "manage.py", "worker"], app_environment(), log)
    try:
        http_receiver.wait_for(1, timeout=60)
        delivery.refresh_from_db()
        assert delivery.status == Delivery.Status.SENDING
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait()
    finally:
        stop([worker])
    http_receiver.hold.clear()
    http_receiver.release.set()
    # A new worker sends the next message, and not the one under way when the other died.
    worker = spawn([sys.executable, "manage.py", "worker"], app_environment(), log)
    try:
        finish(start(job), Status.FAILED)
        reactions.process_events()
        http_receiver.wait_for(2, timeout=60)
        sent = Delivery.objects.filter(status=Delivery.Status.SENT)
        wait_until(sent.exists, 60, "the new worker to record the second message")
        # Once the lease has passed, any sender marks it unknown, and nobody sends it.
        later = timezone.now() + sending.lease() + timedelta(seconds=1)
        assert sending.mark_interrupted(later) == [delivery.pk]
        assert sending.send_due(now=later + timedelta(hours=2)) == []
    finally:
        stop([worker])
    delivery.refresh_from_db()
    assert delivery.status == Delivery.Status.UNKNOWN
    [attempt] = delivery.attempt_log.all()
    assert attempt.ok is None
    assert "not sent again" in attempt.answer
    ids = [request.headers["webhook-id"] for request in http_receiver.requests]
    assert len(ids) == len(set(ids)) == 2


@pytest.mark.django_db
def test_a_test_message_is_sent_at_once_and_its_answer_returned(apis_manager_and_channel):
    api, channel, receiver = apis_manager_and_channel
    receiver.answers.append((500, b"try later"))
    failed = api.post(f"/api/v1/notification-channels/{channel.pk}/test/").json()
    assert failed["ok"] is False
    assert failed["answer"] == "HTTP 500 Internal Server Error: try later"
    ok = api.post(f"/api/v1/notification-channels/{channel.pk}/test/").json()
    assert (ok["ok"], ok["answer"]) == (True, "HTTP 204 No Content")
    [_first, second] = receiver.wait_for(2)
    payload = StandardVerifier(channel.signing_secret).verify(second.body, second.headers)
    assert payload["type"] == "test"
    # In the log, never retried.
    log = Delivery.objects.filter(channel=channel).order_by("id")
    assert [(d.event, d.status, d.attempts) for d in log] == [
        ("test", Delivery.Status.FAILED, 1),
        ("test", Delivery.Status.SENT, 1),
    ]
    assert sending.send_due(now=timezone.now() + timedelta(days=1)) == []


@pytest.fixture
def apis_manager_and_channel(make_member, team, http_receiver):
    api = APIClient()
    user = make_member(team, Role.MANAGER)
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {ApiToken.issue(user, 'test')[1]}")
    return api, make_channel(team, http_receiver.url + "/test", Event.FAILED), http_receiver


def test_an_unreachable_destination_is_logged_in_plain_words(team, job, http_receiver):
    http_receiver.server.shutdown()
    http_receiver.server.server_close()
    delivery = one_delivery(team, job, http_receiver.url + "/hook")
    [attempt] = sending.send_due()
    assert attempt.answer == (
        "cannot connect: Failed to establish a new connection: [Errno 111] Connection refused"
    )
    delivery.refresh_from_db()
    assert delivery.status == Delivery.Status.PENDING


def test_a_signed_webhook_answered_too_late_is_not_sent_again(team, job, http_receiver, settings):
    settings.NOTIFICATION_TIMEOUT_SECONDS = 1
    delivery = one_delivery(team, job, http_receiver.url)
    http_receiver.hold.set()  # it takes the request and answers only after the time limit
    [attempt] = sending.send_due()
    http_receiver.release.set()
    delivery.refresh_from_db()
    assert delivery.status == Delivery.Status.UNKNOWN
    assert attempt.answer.startswith("no answer within 1 s (whether the message arrived is")
    assert sending.send_due(now=timezone.now() + timedelta(hours=2)) == []
    assert len(http_receiver.requests) == 1
