"""A server form refused for any reason never shows the secrets that were typed into it."""

from __future__ import annotations

import pytest
from django.urls import reverse

from accounts.models import Role
from servers.models import Server

pytestmark = pytest.mark.django_db

PASSPHRASE = "typed-passphrase-42"
PASSWORD = "typed-password-42"


@pytest.fixture(params=["ui", "admin"])
def add_url_and_client(request, client, make_member, superuser, team) -> tuple[str, object]:
    if request.param == "ui":
        client.force_login(make_member(team, Role.MANAGER))
        return reverse("server-add"), client
    client.force_login(superuser)
    return reverse("admin:servers_server_add"), client


@pytest.mark.parametrize("key_kind", ["usable", "encrypted, wrong passphrase"])
def test_a_refused_form_does_not_render_the_pasted_secrets_back(
    add_url_and_client, ssh_client_keys, team, key_kind
):
    url, client = add_url_and_client
    key = (
        ssh_client_keys.private_key
        if key_kind == "usable"
        else ssh_client_keys.encrypted_private_key
    )
    response = client.post(
        url,
        {
            "team": team.pk,
            "name": "web-1",
            "host": "",  # refused: the form comes back
            "port": 22,
            "username": "deploy",
            "auth_method": "key",
            "new_private_key": key,
            "new_passphrase": PASSPHRASE,
            "new_password": PASSWORD,
        },
    )
    assert response.status_code == 200
    html = response.content.decode()
    assert 'name="new_private_key"' in html
    assert "This field is required." in html
    for line in key.splitlines()[1:-1]:
        assert line not in html
    assert PASSPHRASE not in html
    assert PASSWORD not in html
    assert not Server.objects.exists()
