"""The suite-wide secret watch (root conftest, accounts/tests/leaks.py) really catches leaks.

Every response of every test is checked; these tests prove the check fails when a response
does show a secret, through a throw-away view that echoes what it is given.
"""

from __future__ import annotations

import pytest
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.urls import path
from rest_framework.test import APIClient

from accounts.models import ApiToken
from accounts.tests.leaks import SecretLeak, SecretWatch
from servers.models import Server

pytestmark = pytest.mark.django_db


def echo(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"value": request.GET["value"]})


urlpatterns = [path("echo/", echo)]


@pytest.fixture
def server(team) -> Server:
    return Server.objects.create(
        team=team,
        name="web",
        host="127.0.0.1",
        username="deploy",
        auth_method="password",
        password="correct horse battery staple",
        passphrase="open sesame 42",
    )


def stored(server: Server, column: str) -> str:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {column} FROM servers_server WHERE id = %s", [server.pk])
        return cursor.fetchone()[0]


@pytest.mark.urls(__name__)
def test_a_response_showing_a_server_secret_fails_the_test(client, server):
    assert client.get("/echo/", {"value": "harmless"}).json() == {"value": "harmless"}
    for secret in (
        "correct horse battery staple",
        "open sesame 42",
        stored(server, "password"),
        stored(server, "passphrase"),
    ):
        with pytest.raises(SecretLeak, match="shows a stored secret"):
            client.get("/echo/", {"value": f"the secret is {secret}!"})


@pytest.mark.urls(__name__)
def test_each_line_of_a_private_key_counts_as_a_secret(client, team, sshd):
    key = sshd.client_keys.private_key
    Server.objects.create(team=team, name="k", host="h", username="u", private_key=key)
    body_lines = [line for line in key.splitlines() if line and not line.startswith("-----")]
    assert len(body_lines) > 2
    for line in body_lines:
        if len(line) >= 8:
            with pytest.raises(SecretLeak, match="a line of a server's private key"):
                client.get("/echo/", {"value": f"<pre>{line}</pre>"})


@pytest.mark.urls(__name__)
def test_token_texts_and_hashes_count_as_secrets(client, alice_token):
    token, text = alice_token
    for value, kind in (
        (text, "an API token's text"),
        (text.split("_", 2)[2], "an API token's random part"),
        (token.token_hash, "an API token's hash"),
    ):
        with pytest.raises(SecretLeak, match=kind):
            client.get("/echo/", {"value": value})


@pytest.fixture
def alice_token(django_user_model) -> tuple[ApiToken, str]:
    return ApiToken.issue(django_user_model.objects.create_user("alice"), "ci")


def test_a_new_token_is_shown_once_to_its_creator_and_never_again(
    django_user_model, secret_watch: SecretWatch
):
    alice = django_user_model.objects.create_user("alice")
    client = APIClient()
    client.force_login(alice)
    created = client.post("/api/v1/tokens/", {"name": "ci"}, format="json")
    text = created.json()["token"]  # allowed: this is the one time it is shown
    # Any later response showing it is a leak, for the creator too.
    with pytest.raises(SecretLeak, match="an API token's text"):
        secret_watch.check(created.content, status=200, where="again", client=client)
    with pytest.raises(SecretLeak):
        secret_watch.check(text.encode(), status=200, where="elsewhere", client=APIClient())


def test_short_secrets_are_caught_as_whole_json_values(team, secret_watch: SecretWatch):
    Server.objects.create(team=team, name="s", host="h", username="u", password="pw")
    secret_watch.check(b'{"name": "npw"}', status=200, where="fine")
    with pytest.raises(SecretLeak):
        secret_watch.check(b'{"password": "pw"}', status=200, where="leak")


def test_api_responses_never_show_server_secrets(superuser, team, sshd):
    client = APIClient()
    client.force_login(superuser)
    body = {
        "team": team.pk,
        "name": "web",
        "host": sshd.host,
        "port": sshd.port,
        "username": sshd.username,
        "private_key": sshd.client_keys.encrypted_private_key,
        "passphrase": sshd.client_keys.passphrase,
        "password": "a password nobody may read",
    }
    created = client.post("/api/v1/servers/", body, format="json")
    assert created.status_code == 201, created.json()
    shown = created.json()
    assert (shown["has_private_key"], shown["has_passphrase"], shown["has_password"]) == (
        True,
        True,
        True,
    )
    for field in ("private_key", "passphrase", "password"):
        assert field not in shown
    # The watch checked these responses too; a leak would have failed the test already.
    assert client.get(f"/api/v1/servers/{shown['id']}/").status_code == 200
    assert client.get("/api/v1/servers/").status_code == 200
    changed = client.patch(
        f"/api/v1/servers/{shown['id']}/", {"password": "another one, secret"}, format="json"
    )
    assert changed.status_code == 200
    assert "another one" not in changed.content.decode()
