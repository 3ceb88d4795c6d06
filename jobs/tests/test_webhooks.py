"""Webhook deliveries through /hooks/<key>/: signed requests start runs, everything else not.

Requests are signed as a sender would: with the standardwebhooks library, and once by hand
with hmac, so that a mistake shared by our receiver and the library cannot pass unseen.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
from datetime import UTC, datetime, timedelta

import pytest
from django.test import Client
from django.utils import timezone
from standardwebhooks.webhooks import Webhook as Signer

from accounts.models import AuditEvent, Source
from executions.models import Execution, Status, Trigger
from jobs import webhooks
from jobs.models import Concurrency, Job, Webhook, WebhookDelivery, WebhookMode
from jobs.parameters import clean_definitions
from jobs.services import retire_previous_secret, rotate_webhook_secret, save_webhook
from servers.models import Server

pytestmark = [pytest.mark.django_db, pytest.mark.timeout(60)]

PUSH = {"ref": "refs/heads/main", "after": "abc123", "repository": {"name": "shop"}, "n": 3}


@pytest.fixture
def job(team) -> Job:
    server = Server.objects.create(team=team, name="web-1", host="127.0.0.1", username="u")
    job = Job.objects.create(
        team=team,
        name="deploy",
        script="echo $REF",
        parameters=clean_definitions(
            [
                {"name": "REF", "required": True},
                {"name": "REPO"},
                {"name": "COUNT", "type": "integer", "max": 10},
            ]
        ),
    )
    job.servers.set([server])
    return job


@pytest.fixture
def hook(job) -> Webhook:
    webhook = Webhook(
        job=job,
        name="push",
        parameter_map={"REF": "ref", "REPO": "repository.name", "COUNT": "n"},
    )
    return save_webhook(webhook, actor=None, source=Source.SYSTEM)


def signed_headers(
    secret: str, body: bytes, msg_id: str = "msg-1", at: datetime | None = None
) -> dict[str, str]:
    at = at or timezone.now()
    signature = Signer(secret).sign(msg_id, at, body.decode())
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": signature,
    }


def as_http(headers: dict[str, str]) -> dict[str, str]:
    return {f"HTTP_{name.upper().replace('-', '_')}": value for name, value in headers.items()}


def post(webhook: Webhook, body: bytes, headers: dict[str, str]):
    return Client().post(
        f"/hooks/{webhook.key}/", body, content_type="application/json", **as_http(headers)
    )


def deliver(webhook: Webhook, document: object = PUSH, msg_id: str = "msg-1", **kwargs):
    body = json.dumps(document).encode()
    return post(webhook, body, signed_headers(webhook.secret, body, msg_id, **kwargs))


def test_a_signed_delivery_starts_the_job_with_mapped_parameters(
    hook, queued, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = deliver(hook)
    assert response.status_code == 201, response.json()
    execution = Execution.objects.get()
    assert response.json() == {"detail": f"Run #{execution.pk}: queued.", "execution": execution.pk}
    assert execution.trigger == Trigger.WEBHOOK
    assert execution.webhook == hook
    assert execution.parameters == {"REF": "refs/heads/main", "REPO": "shop", "COUNT": 3}
    assert queued == [execution.pk]
    delivery = WebhookDelivery.objects.get()
    assert (delivery.delivery_id, delivery.accepted, delivery.status_code) == ("msg-1", True, 201)
    assert delivery.execution == execution
    assert AuditEvent.objects.get(action="run").details["webhook"] == hook.pk


def test_a_signature_made_by_hand_with_hmac_is_accepted(hook):
    body = b'{"ref": "refs/heads/main"}'
    stamp = str(int(timezone.now().timestamp()))
    key = base64.b64decode(hook.secret.removeprefix("whsec_"))
    digest = hmac.new(key, b"hand-1." + stamp.encode() + b"." + body, hashlib.sha256).digest()
    headers = {
        "webhook-id": "hand-1",
        "webhook-timestamp": stamp,
        # Several signatures may be sent; one matching is enough.
        "webhook-signature": f"v1,{base64.b64encode(b'x' * 32).decode()} "
        f"v1,{base64.b64encode(digest).decode()}",
    }
    assert post(hook, body, headers).status_code == 201


def test_a_replayed_delivery_answers_the_first_run_and_starts_nothing(
    hook, queued, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        first = deliver(hook).json()["execution"]
        again = deliver(hook)
    assert again.status_code == 200
    assert again.json()["execution"] == first
    assert "received before" in again.json()["detail"]
    assert Execution.objects.count() == 1
    assert queued == [first]
    assert WebhookDelivery.objects.filter(accepted=True).count() == 1
    assert deliver(hook, msg_id="msg-2").status_code == 201  # another id is another run


def test_two_identical_deliveries_at_the_same_moment_start_one_run(hook):
    # Both got past every check; only the database's unique constraint stands between them
    # and a second run. (Remove `webhook_delivery_once` and this test fails.)
    outcomes = [webhooks.accept(hook, "same-id", {"REF": "x"}) for _ in range(2)]
    assert [o.status for o in outcomes] == [201, 200]
    assert outcomes[1].execution == outcomes[0].execution
    assert Execution.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_two_receivers_in_parallel_start_one_run(hook, in_background):
    body = json.dumps(PUSH).encode()
    headers = signed_headers(hook.secret, body, "race-1")
    barrier = threading.Barrier(2)
    outcomes: list[webhooks.Outcome] = []

    def receiver() -> None:
        barrier.wait(10)
        outcomes.append(webhooks.receive(hook.key, headers, body))

    threads = [in_background(receiver) for _ in range(2)]
    for thread in threads:
        thread.join(30)
    assert sorted(o.status for o in outcomes) == [200, 201]
    assert Execution.objects.count() == 1
    assert {o.execution.pk for o in outcomes} == {Execution.objects.get().pk}


def test_a_timestamp_six_minutes_old_or_ahead_is_refused(hook):
    for offset in (-6, 6):
        response = deliver(hook, at=timezone.now() + timedelta(minutes=offset))
        assert response.status_code == 401
        assert "5 minutes" in response.json()["detail"]
    assert deliver(hook, at=timezone.now() - timedelta(minutes=4)).status_code == 201
    assert not Execution.objects.filter(status=Status.SKIPPED).exists()


def test_the_clock_can_be_injected(hook):
    body = json.dumps(PUSH).encode()
    sent = datetime(2026, 3, 29, 1, 0, tzinfo=UTC)
    headers = signed_headers(hook.secret, body, at=sent)
    late = webhooks.receive(hook.key, headers, body, now=sent + timedelta(minutes=5, seconds=1))
    assert late.status == 401
    assert webhooks.receive(hook.key, headers, body, now=sent + timedelta(minutes=5)).status == 201


def test_one_changed_body_byte_is_refused(hook):
    body = json.dumps(PUSH).encode()
    headers = signed_headers(hook.secret, body)
    tampered = body.replace(b"main", b"maim")
    response = post(hook, tampered, headers)
    assert response.status_code == 401
    assert response.json() == {"detail": "No signature matches.", "execution": None}
    assert not Execution.objects.exists()
    delivery = WebhookDelivery.objects.get()
    assert (delivery.accepted, delivery.status_code, delivery.delivery_id) == (False, 401, "msg-1")


def test_a_wrong_secret_is_refused(hook):
    body = json.dumps(PUSH).encode()
    other = "whsec_" + base64.b64encode(b"k" * 32).decode()
    assert post(hook, body, signed_headers(other, body)).status_code == 401
    assert not Execution.objects.exists()


def test_the_previous_secret_works_until_it_is_retired(hook):
    old = hook.secret
    new = rotate_webhook_secret(hook, actor=None, source=Source.SYSTEM)
    assert new != old
    hook.refresh_from_db()
    assert (hook.secret, hook.previous_secret) == (new, old)
    body = json.dumps(PUSH).encode()
    assert post(hook, body, signed_headers(old, body, "during-1")).status_code == 201
    assert post(hook, body, signed_headers(new, body, "during-2")).status_code == 201
    assert retire_previous_secret(hook, actor=None, source=Source.SYSTEM) is True
    assert retire_previous_secret(hook, actor=None, source=Source.SYSTEM) is False
    assert post(hook, body, signed_headers(old, body, "after-1")).status_code == 401
    assert post(hook, body, signed_headers(new, body, "after-2")).status_code == 201
    actions = AuditEvent.objects.filter(object_type="jobs.webhook").values_list("action", flat=True)
    assert sorted(actions) == ["create", "retire_previous_secret", "rotate_secret"]
    assert old not in str(list(AuditEvent.objects.values_list("details", flat=True)))


@pytest.mark.parametrize(
    ("drop", "change", "detail"),
    [
        ("webhook-id", {}, "Missing header: webhook-id."),
        ("webhook-signature", {}, "Missing header: webhook-signature."),
        ("webhook-timestamp", {}, "Missing header: webhook-timestamp."),
        (None, {"webhook-timestamp": "12.5"}, "webhook-timestamp must be whole seconds"),
        (None, {"webhook-signature": "v2,abc"}, "webhook-signature has no v1"),
        (None, {"webhook-id": "has space"}, "webhook-id must be"),
    ],
)
def test_missing_or_malformed_headers_are_refused(hook, drop, change, detail):
    body = json.dumps(PUSH).encode()
    headers = signed_headers(hook.secret, body) | change
    headers.pop(drop, None)
    response = post(hook, body, headers)
    assert response.status_code == 400
    assert response.json()["detail"].startswith(detail)
    assert not Execution.objects.exists()


def test_an_oversized_body_is_refused_with_413(hook, settings):
    settings.WEBHOOK_MAX_BODY_BYTES = 100
    response = deliver(hook, {"ref": "x" * 200})
    assert response.status_code == 413
    assert WebhookDelivery.objects.get().status_code == 413
    assert not Execution.objects.exists()


@pytest.mark.parametrize("body", [b"{not json", b"[1, 2]", b"[" * 100_000])
def test_a_body_that_is_not_a_json_object_is_refused(hook, body):
    response = post(hook, body, signed_headers(hook.secret, body))
    assert response.status_code == 400
    assert not Execution.objects.exists()


def test_a_delivery_the_filter_does_not_match_starts_nothing(hook):
    hook.filter_path, hook.filter_value = "ref", "refs/heads/main"
    hook.save()
    response = deliver(hook, PUSH | {"ref": "refs/heads/feature"})
    assert response.status_code == 422
    filtered = "Filtered out: ref is not 'refs/heads/main'."
    assert response.json() == {"detail": filtered, "execution": None}
    assert deliver(hook, {"n": 1}, msg_id="no-ref").json()["detail"] == filtered
    assert not Execution.objects.exists()
    assert deliver(hook, msg_id="main").status_code == 201


def test_a_filter_compares_other_values_as_json(hook):
    hook.filter_path, hook.filter_value = "repository.private", "false"
    hook.save()
    assert deliver(hook, PUSH | {"repository": {"private": True}}).status_code == 422
    assert deliver(hook, PUSH | {"repository": {"private": False}}, "m2").status_code == 201


def test_a_missing_field_gives_no_value_and_a_bad_value_is_named(hook):
    response = deliver(hook, {"n": 3})  # REF is required
    assert response.status_code == 400
    assert response.json()["detail"] == "Parameter REF: A value is required."
    response = deliver(hook, PUSH | {"n": 11}, msg_id="msg-2")
    assert response.status_code == 400
    assert response.json()["detail"].startswith("Parameter COUNT:")
    assert not Execution.objects.exists()
    # Refused deliveries do not use up their id: the sender's retry, fixed, is accepted.
    assert deliver(hook, msg_id="msg-2").status_code == 201


def test_over_the_rate_limit_answers_429(hook):
    hook.rate_limit_per_minute = 3
    hook.save()
    codes = [deliver(hook, msg_id=f"m{i}").status_code for i in range(3)]
    assert codes == [201, 201, 201]
    response = deliver(hook, msg_id="m4")
    assert response.status_code == 429
    assert Execution.objects.count() == 3
    # Unsigned requests, which anyone can send, count for nothing and are refused as such.
    assert post(hook, b"{}", {}).status_code == 400
    later = timezone.now() + timedelta(seconds=61)
    body = json.dumps(PUSH).encode()
    headers = signed_headers(hook.secret, body, "m5", at=later)
    assert webhooks.receive(hook.key, headers, body, now=later).status == 201


def test_only_the_newest_rejected_deliveries_are_kept(hook, monkeypatch):
    monkeypatch.setattr(webhooks, "KEPT_REJECTED", 3)
    deliver(hook, msg_id="kept-accepted")
    for i in range(5):
        webhooks.receive(hook.key, {"webhook-id": f"bad-{i}"}, b"{}")
    rejected = WebhookDelivery.objects.filter(accepted=False)
    assert sorted(rejected.values_list("delivery_id", flat=True)) == ["bad-2", "bad-3", "bad-4"]
    assert WebhookDelivery.objects.filter(accepted=True).count() == 1


def test_unknown_keys_and_disabled_webhooks_answer_404(hook):
    response = Client().post("/hooks/no-such-key/", b"{}", content_type="application/json")
    assert response.status_code == 404
    assert response.json()["execution"] is None
    assert not WebhookDelivery.objects.exists()  # nothing is logged for an unknown key
    hook.enabled = False
    hook.save()
    assert deliver(hook).status_code == 404
    assert WebhookDelivery.objects.get().reason == "This webhook is disabled."
    assert not Execution.objects.exists()


def test_only_post_is_allowed(hook):
    response = Client().get(f"/hooks/{hook.key}/")
    assert response.status_code == 405
    assert response["Allow"] == "POST"
    assert not WebhookDelivery.objects.exists()


def test_a_disabled_job_answers_409(hook, job):
    job.enabled = False
    job.save()
    response = deliver(hook)
    assert response.status_code == 409
    assert "disabled" in response.json()["detail"]


def test_overlap_skip_records_the_delivery_run_as_skipped(
    hook, job, queued, django_capture_on_commit_callbacks
):
    job.concurrency = Concurrency.SKIP
    job.save()
    with django_capture_on_commit_callbacks(execute=True):
        first = deliver(hook, msg_id="first").json()["execution"]
        response = deliver(hook, msg_id="second")
    assert response.status_code == 201
    skipped = Execution.objects.get(pk=response.json()["execution"])
    assert skipped.status == Status.SKIPPED
    assert skipped.webhook == hook
    assert response.json()["detail"] == f"Run #{skipped.pk}: skipped."
    assert queued == [first]


def github_headers(secret: str, body: bytes, delivery: str = "gh-1", event: str = "push"):
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {
        "X-GitHub-Delivery": delivery,
        "X-GitHub-Event": event,
        "X-Hub-Signature-256": f"sha256={digest}",
    }


def test_github_mode_takes_githubs_signature_and_accepts_a_body_once(hook):
    hook.mode = WebhookMode.GITHUB
    hook.save()
    body = json.dumps(PUSH).encode()
    response = post(hook, body, github_headers(hook.secret, body))
    assert response.status_code == 201, response.json()
    signature = hmac.new(hook.secret.encode(), body, hashlib.sha256).hexdigest()
    assert WebhookDelivery.objects.get(accepted=True).delivery_id == f"sha256={signature}"
    assert post(hook, body, github_headers(hook.secret, body)).status_code == 200  # replay
    # GitHub signs neither a time nor its delivery id: the same body under a new id is a
    # replay too (an attacker who saw one delivery could otherwise resend it at will).
    again = post(hook, body, github_headers(hook.secret, body, "gh-forged"))
    assert (again.status_code, again.json()["execution"]) == (200, response.json()["execution"])
    assert post(hook, body + b" ", github_headers(hook.secret, body, "gh-2")).status_code == 401
    ping = post(hook, b'{"zen": "hi"}', github_headers(hook.secret, b'{"zen": "hi"}', "p", "ping"))
    assert (ping.status_code, ping.json()["execution"]) == (200, None)
    # Standard Webhooks headers mean nothing to a GitHub-mode webhook.
    assert post(hook, body, signed_headers(hook.secret, body)).status_code == 400
    assert Execution.objects.count() == 1


def test_unsigned_requests_do_not_use_up_the_rate_limit(hook):
    hook.rate_limit_per_minute = 2
    hook.save()
    for _ in range(5):
        assert post(hook, b"{}", {"webhook-id": "x", "webhook-timestamp": "1"}).status_code in (
            400,
            401,
        )
    assert deliver(hook, msg_id="signed").status_code == 201


def test_a_timestamp_too_large_for_a_date_is_refused_not_a_crash(hook):
    body = json.dumps(PUSH).encode()
    headers = signed_headers(hook.secret, body, "big") | {"webhook-timestamp": "99999999999"}
    response = post(hook, body, headers)
    assert response.status_code == 400
