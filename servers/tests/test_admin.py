"""The admin: write-only secrets, connection tests, and trusting host keys by a person."""

import pytest
from django.contrib.messages import get_messages
from django.db import connection
from django.urls import reverse

from servers.models import Server

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(60)]


@pytest.fixture
def admin_client(client, superuser):
    client.force_login(superuser)
    return client


def stored_value(server: Server, column: str) -> str:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {column} FROM servers_server WHERE id = %s", [server.pk])
        return cursor.fetchone()[0]


def test_secrets_are_encrypted_at_rest_and_never_shown(admin_client, sshd, team):
    key = sshd.client_keys.private_key
    response = admin_client.post(
        reverse("admin:servers_server_add"),
        {
            "team": team.pk,
            "name": "web-1",
            "host": sshd.host,
            "port": sshd.port,
            "username": sshd.username,
            "auth_method": "key",
            "new_private_key": key,
            "new_password": "hunter2-password",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    server = Server.objects.get(name="web-1")
    assert server.private_key == key
    assert key.splitlines()[1] not in stored_value(server, "private_key")
    assert "hunter2" not in stored_value(server, "password")

    page = admin_client.get(reverse("admin:servers_server_change", args=[server.pk]))
    html = page.content.decode()
    assert "private key: set" in html
    assert "passphrase: not set" in html
    for secret_line in key.splitlines()[1:-1]:
        assert secret_line not in html
    assert "hunter2" not in html
    assert stored_value(server, "private_key") not in html


def test_empty_secret_field_keeps_the_stored_one_and_clear_removes_it(admin_client, make_server):
    server = make_server(password="keep-me-secret")
    url = reverse("admin:servers_server_change", args=[server.pk])
    form = {
        "team": server.team_id,
        "name": server.name,
        "host": server.host,
        "port": server.port,
        "username": server.username,
        "auth_method": "key",
        "new_private_key": "",
        "new_password": "",
    }
    assert admin_client.post(url, form).status_code == 302
    server.refresh_from_db()
    assert server.password == "keep-me-secret"
    assert server.private_key
    assert admin_client.post(url, form | {"clear_password": "on"}).status_code == 302
    server.refresh_from_db()
    assert server.password is None


def test_test_connection_action_reports_and_records(admin_client, make_server):
    good = make_server(name="good")
    changed = make_server(name="changed")
    changed.host_key = good.host_key.replace("A", "B", 1)  # a different (bogus) pinned key
    changed.save()
    response = admin_client.post(
        reverse("admin:servers_server_changelist"),
        {"action": "test_connection", "_selected_action": [good.pk, changed.pk]},
    )
    shown = [str(m) for m in get_messages(response.wsgi_request)]
    assert any(m.startswith("good: ok in ") for m in shown), shown
    assert any(m.startswith("changed: host_key_changed. host key changed: expected") for m in shown)
    good.refresh_from_db()
    changed.refresh_from_db()
    assert good.last_check_status == "ok"
    assert good.last_check_latency_ms > 0
    assert changed.last_check_status == "host_key_changed"


def test_host_key_is_trusted_only_after_a_person_confirms_its_fingerprint(
    admin_client, make_server, make_sshd, superuser
):
    remote = make_sshd()
    server = make_server(remote, host_key="")
    url = reverse("admin:servers_server_changelist")
    shown = admin_client.post(
        url, {"action": "fetch_and_trust_host_key", "_selected_action": [server.pk]}
    )
    assert remote.host_key.fingerprint in shown.content.decode()
    server.refresh_from_db()
    assert server.host_key == ""  # showing is not trusting

    wrong = admin_client.post(
        url,
        {
            "action": "fetch_and_trust_host_key",
            "_selected_action": [server.pk],
            "confirm": "yes",
            f"fingerprint-{server.pk}": "SHA256:not-what-the-server-offers",
        },
    )
    assert any("nothing was trusted" in str(m) for m in get_messages(wrong.wsgi_request))
    server.refresh_from_db()
    assert server.host_key == ""

    admin_client.post(
        url,
        {
            "action": "fetch_and_trust_host_key",
            "_selected_action": [server.pk],
            "confirm": "yes",
            f"fingerprint-{server.pk}": remote.host_key.fingerprint,
        },
    )
    server.refresh_from_db()
    assert server.host_key_fingerprint == remote.host_key.fingerprint
    assert server.host_key_trusted_by == superuser
    assert server.host_key_trusted_at is not None


@pytest.mark.parametrize(
    ("key", "passphrase", "error"),
    [
        ("not a key at all", "", "this is not a private key"),
        ("encrypted", "", "this key is encrypted: give its passphrase"),
        ("encrypted", "wrong passphrase", "wrong passphrase"),
    ],
)
def test_unusable_private_key_is_refused_with_a_field_error(
    admin_client, sshd, team, key, passphrase, error
):
    if key == "encrypted":
        key = sshd.client_keys.encrypted_private_key
    response = admin_client.post(
        reverse("admin:servers_server_add"),
        {
            "team": team.pk,
            "name": "web-1",
            "host": sshd.host,
            "port": sshd.port,
            "username": sshd.username,
            "auth_method": "key",
            "new_private_key": key,
            "new_passphrase": passphrase,
        },
    )
    assert response.status_code == 200
    assert error in response.context["adminform"].form.errors["new_private_key"][0]
    assert not Server.objects.exists()
