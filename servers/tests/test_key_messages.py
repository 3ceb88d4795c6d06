"""A key that cannot be used is refused in plain words: what was pasted and what to do.

The same words on every face where a key is entered: the UI form, the admin and the API.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from accounts.models import ApiToken, Role
from servers.models import Server
from servers.validation import private_key_error

PASSPHRASE = "key-passphrase-42"


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    directory = tmp_path_factory.mktemp("keys")

    def keygen(name: str, key_type: str, passphrase: str = "", *extra: str) -> Path:
        path = directory / name
        subprocess.run(
            ["ssh-keygen", "-q", "-t", key_type, "-N", passphrase, "-f", str(path), *extra],
            check=True,
        )
        return path

    plain = keygen("plain", "ed25519")
    encrypted = keygen("encrypted", "ed25519", PASSPHRASE)
    pem = keygen("pem", "rsa", PASSPHRASE, "-b", "2048", "-m", "PEM")
    public_pem = subprocess.run(
        ["ssh-keygen", "-e", "-m", "PKCS8", "-f", f"{pem}.pub"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return {
        "plain": plain.read_text(),
        "public": Path(f"{plain}.pub").read_text(),
        "public PEM": public_pem,
        "encrypted": encrypted.read_text(),
        "encrypted PEM": pem.read_text(),
        "dsa": keygen("dsa", "dsa").read_text(),
    }


@pytest.mark.parametrize(
    ("key", "passphrase", "message"),
    [
        ("public", None, "this is a public key: paste the private key"),
        ("public PEM", None, "this is a public key: paste the private key"),
        ("garbage", None, "this is not a private key: paste the whole key file"),
        ("encrypted", None, "this key is encrypted: give its passphrase"),
        ("encrypted PEM", None, "this key is encrypted: give its passphrase"),
        ("encrypted", "wrong", "wrong passphrase for this key"),
        ("encrypted PEM", "wrong", "wrong passphrase for this key"),
        ("truncated", None, "this private key cannot be read: it is incomplete or damaged"),
        ("certificate", None, "this is a certificate, not a private key"),
        ("putty", None, "this is a PuTTY key: export it in OpenSSH format"),
        ("dsa", None, "this kind of private key is not supported"),
    ],
)
@pytest.mark.filterwarnings("ignore:SSH DSA keys are deprecated")
def test_an_unusable_key_is_named_for_what_it_is(keys, key, passphrase, message) -> None:
    text = {
        "garbage": "hello, this is not a key",
        "truncated": keys["plain"][:200],
        "certificate": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
        "putty": "PuTTY-User-Key-File-3: ssh-ed25519\nEncryption: none\n",
    }.get(key) or keys[key]
    error = private_key_error(text, passphrase)
    assert error is not None
    assert error.startswith(message)
    assert "http" not in error  # no library's advice with its URL


@pytest.mark.parametrize(
    ("key", "passphrase"),
    [("plain", None), ("plain", "a stored passphrase is ignored"), ("encrypted", PASSPHRASE)],
)
def test_a_usable_key_is_accepted(keys, key, passphrase) -> None:
    assert private_key_error(keys[key], passphrase) is None


def server_fields(team, key: str) -> dict[str, object]:
    return {
        "team": team.pk,
        "name": "web-1",
        "host": "127.0.0.1",
        "port": 22,
        "username": "deploy",
        "auth_method": "key",
        "new_private_key": key,
    }


@pytest.mark.django_db
@pytest.mark.parametrize("face", ["ui", "admin"])
def test_the_forms_say_a_public_key_is_a_public_key(
    client, make_member, superuser, team, keys, face
) -> None:
    if face == "ui":
        client.force_login(make_member(team, Role.MANAGER))
        url = reverse("server-add")
    else:
        client.force_login(superuser)
        url = reverse("admin:servers_server_add")
    response = client.post(url, server_fields(team, keys["public"]))
    assert response.status_code == 200
    form = response.context["form"] if face == "ui" else response.context["adminform"].form
    assert form.errors["new_private_key"] == [
        "this is a public key: paste the private key (the file without .pub)"
    ]
    assert not Server.objects.exists()


@pytest.mark.django_db
def test_the_api_says_an_encrypted_key_needs_its_passphrase(make_member, team, keys) -> None:
    api = APIClient()
    token = ApiToken.issue(make_member(team, Role.MANAGER), "keys")[1]
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    body = {
        "team": team.pk,
        "name": "web-1",
        "host": "127.0.0.1",
        "username": "deploy",
        "private_key": keys["encrypted"],
    }
    response = api.post("/api/v1/servers/", body, format="json")
    assert response.status_code == 400
    assert response.json()["errors"] == {
        "private_key": ["this key is encrypted: give its passphrase"]
    }
    assert not Server.objects.exists()
