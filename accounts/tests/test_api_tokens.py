"""Personal API tokens: stored hashed, shown once, expiring, revocable, and only your own."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from io import StringIO

import pytest
from django.contrib.auth.models import User
from django.contrib.messages import get_messages
from django.core.management import CommandError, call_command
from django.db import connection
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.models import ApiToken, AuditEvent, Role, Source

pytestmark = pytest.mark.django_db


@pytest.fixture
def alice(make_member, team) -> User:
    return make_member(team, Role.VIEWER, "alice")


@pytest.fixture
def session(alice: User) -> APIClient:
    client = APIClient()
    client.force_login(alice)
    return client


def bearer(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def stored_row(token_id: int) -> tuple[object, ...]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM accounts_apitoken WHERE id = %s", [token_id])
        return cursor.fetchone()


def test_created_token_is_shown_once_and_stored_only_as_a_hash(session, alice):
    response = session.post("/api/v1/tokens/", {"name": "ci"}, format="json")
    assert response.status_code == 201
    created = response.json()
    secret = created["token"]
    assert secret.startswith(f"tsb_{created['lookup']}_")

    row = stored_row(created["id"])
    assert not any(secret in str(value) for value in row)
    assert hashlib.sha256(secret.encode()).hexdigest() in row

    listing = session.get("/api/v1/tokens/").json()
    detail = session.get(f"/api/v1/tokens/{created['id']}/").json()
    assert [item["id"] for item in listing["results"]] == [created["id"]]
    for shown in (listing["results"][0], detail):
        assert "token" not in shown
        assert shown["name"] == "ci"
        assert shown["active"] is True
    assert secret not in str(listing) + str(detail)

    assert bearer(secret).get("/api/v1/servers/").status_code == 200
    event = AuditEvent.objects.get(action="create_token")
    assert (event.actor, event.source, event.object_id) == (alice, Source.API, str(created["id"]))


def test_token_use_records_the_last_used_time(alice):
    token, secret = ApiToken.issue(alice, "ci")
    assert token.last_used_at is None
    assert bearer(secret).get("/api/v1/teams/").status_code == 200
    token.refresh_from_db()
    assert timezone.now() - token.last_used_at < timedelta(seconds=10)

    long_ago = timezone.now() - timedelta(hours=1)
    ApiToken.objects.filter(pk=token.pk).update(last_used_at=long_ago)
    bearer(secret).get("/api/v1/teams/")
    token.refresh_from_db()
    assert token.last_used_at > long_ago


def test_expired_token_is_refused_with_a_clear_message(session, alice):
    soon = (timezone.now() + timedelta(hours=1)).isoformat()
    created = session.post("/api/v1/tokens/", {"name": "ci", "expires_at": soon}, format="json")
    assert created.status_code == 201
    secret = created.json()["token"]
    assert bearer(secret).get("/api/v1/teams/").status_code == 200

    ApiToken.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    response = bearer(secret).get("/api/v1/teams/")
    assert response.status_code == 401
    assert response.json() == {"detail": "This API token has expired."}
    assert response["WWW-Authenticate"] == 'Bearer realm="tsubame"'
    assert session.get(f"/api/v1/tokens/{created.json()['id']}/").json()["active"] is False


def test_revoked_token_is_refused(session, alice):
    created = session.post("/api/v1/tokens/", {"name": "ci"}, format="json").json()
    secret = created["token"]
    assert bearer(secret).get("/api/v1/teams/").status_code == 200

    assert session.delete(f"/api/v1/tokens/{created['id']}/").status_code == 204
    response = bearer(secret).get("/api/v1/teams/")
    assert response.status_code == 401
    assert response.json() == {"detail": "This API token was revoked."}
    token = ApiToken.objects.get(pk=created["id"])  # kept, for the record
    assert token.revoked_at is not None
    event = AuditEvent.objects.get(action="revoke_token")
    assert (event.actor, event.source) == (alice, Source.API)


def test_token_can_revoke_itself(alice):
    token, secret = ApiToken.issue(alice, "ci")
    client = bearer(secret)
    assert client.delete(f"/api/v1/tokens/{token.pk}/").status_code == 204
    assert client.get("/api/v1/teams/").status_code == 401


def test_another_users_tokens_do_not_exist(session, django_user_model):
    bob = django_user_model.objects.create_user("bob")
    token, secret = ApiToken.issue(bob, "bob's")
    assert session.get(f"/api/v1/tokens/{token.pk}/").status_code == 404
    assert session.delete(f"/api/v1/tokens/{token.pk}/").status_code == 404
    assert session.get("/api/v1/tokens/").json()["results"] == []
    assert bearer(secret).get("/api/v1/teams/").status_code == 200  # untouched


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (None, "Authentication credentials were not provided."),
        ("Bearer", "Malformed API token."),
        ("Bearer garbage", "Malformed API token."),
        ("Bearer tsb_000000000000_not-a-real-token", "Invalid API token."),
        ("bearer tsb_x_y", "Invalid API token."),
    ],
)
def test_missing_or_garbage_bearer_token_is_a_json_401(header, message):
    client = APIClient()
    if header is not None:
        client.credentials(HTTP_AUTHORIZATION=header)
    response = client.get("/api/v1/servers/")
    assert response.status_code == 401
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"detail": message}


def test_right_lookup_with_wrong_secret_is_refused(alice):
    token, _secret = ApiToken.issue(alice, "ci")
    forged = f"tsb_{token.lookup}_{'x' * 43}"
    response = bearer(forged).get("/api/v1/teams/")
    assert response.status_code == 401
    assert response.json() == {"detail": "Invalid API token."}


def test_inactive_users_token_is_refused(alice):
    _token, secret = ApiToken.issue(alice, "ci")
    alice.is_active = False
    alice.save()
    assert bearer(secret).get("/api/v1/teams/").status_code == 401


def test_session_auth_needs_csrf_for_unsafe_methods(alice):
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(alice)
    assert client.get("/api/v1/tokens/").status_code == 200
    refused = client.post("/api/v1/tokens/", {"name": "ci"}, format="json")
    assert refused.status_code == 403
    assert "CSRF" in refused.json()["detail"]
    assert not ApiToken.objects.exists()

    # A bearer token is not sent by browsers on their own: no CSRF token needed.
    _token, secret = ApiToken.issue(alice, "ci")
    csrf_free = APIClient(enforce_csrf_checks=True)
    csrf_free.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    assert csrf_free.post("/api/v1/tokens/", {"name": "more"}, format="json").status_code == 201


def test_admin_shows_a_new_token_once(client, alice):
    client.force_login(alice)
    response = client.post(
        reverse("admin:accounts_apitoken_add"), {"name": "from-admin", "expires_at": ""}
    )
    assert response.status_code == 302
    shown = [str(m) for m in get_messages(response.wsgi_request)]
    (message,) = [m for m in shown if m.startswith("Your new token")]
    prefix = "Your new token (copy it now, it is not shown again): "
    assert message.startswith(prefix)
    secret = message.removeprefix(prefix)
    token = ApiToken.objects.get(name="from-admin")
    assert token.user == alice
    assert token.token_hash == hashlib.sha256(secret.encode()).hexdigest()
    assert bearer(secret).get("/api/v1/teams/").status_code == 200

    # Shown on the page the admin goes to next, then never again.
    assert secret in client.get(response["Location"]).content.decode()
    change = client.get(reverse("admin:accounts_apitoken_change", args=[token.pk]))
    assert secret not in change.content.decode()
    listing = client.get(reverse("admin:accounts_apitoken_changelist")).content.decode()
    assert token.lookup in listing
    assert secret not in listing
    event = AuditEvent.objects.get(action="create_token")
    assert (event.actor, event.source) == (alice, Source.ADMIN)


def test_admin_lists_only_your_own_tokens(client, alice, django_user_model):
    ApiToken.issue(django_user_model.objects.create_user("bob"), "bob's")
    mine, _ = ApiToken.issue(alice, "mine")
    client.force_login(alice)
    listing = client.get(reverse("admin:accounts_apitoken_changelist"))
    assert list(listing.context["cl"].result_list) == [mine]


def test_create_api_token_command_prints_a_working_token(alice):
    out = StringIO()
    call_command("create_api_token", "alice", "--name", "deploy", "--expires-days", "2", stdout=out)
    secret = out.getvalue().strip()
    token = ApiToken.objects.get(name="deploy")
    assert token.user == alice
    assert timedelta(days=1) < token.expires_at - timezone.now() <= timedelta(days=2)
    assert bearer(secret).get("/api/v1/teams/").status_code == 200
    event = AuditEvent.objects.get(action="create_token")
    assert (event.actor, event.source) == (alice, Source.SYSTEM)

    with pytest.raises(CommandError, match="no user 'nobody'"):
        call_command("create_api_token", "nobody", stdout=StringIO())
