"""Server secrets at rest: decrypted for every reader, whatever other threads do."""

from __future__ import annotations

import io
import threading

import pytest
from cryptography.fernet import Fernet
from django.core.management import CommandError, call_command
from django.db import connection

from servers.models import Server

PASSWORD = "hunter2-but-longer"


@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(120)
def test_a_thread_validating_a_server_never_makes_others_read_ciphertext(team, in_background):
    server = Server.objects.create(
        team=team,
        name="db",
        host="127.0.0.1",
        username="app",
        auth_method="password",
        password=PASSWORD,
    )
    done = threading.Event()
    wrong: list[str] = []

    def validate() -> None:
        # What a server form's validation does with the field (Model.full_clean), in a loop.
        field = Server._meta.get_field("password")
        while not done.is_set():
            field.clean(PASSWORD, server)

    def read() -> None:
        for _ in range(300):
            password = Server.objects.get(pk=server.pk).password
            if password != PASSWORD:
                wrong.append(password)

    in_background(validate)
    readers = [in_background(read) for _ in range(3)]
    for reader in readers:
        reader.join(90)
    done.set()
    assert not any(reader.is_alive() for reader in readers)
    assert wrong == [], f"{len(wrong)} of 900 reads were not the password, e.g. {wrong[0]!r}"


KEYS = {name: Fernet.generate_key().decode() for name in "ABC"}


def keys(*names: str) -> list[str]:
    """ENCRYPTION_KEYS made of the named keys, newest first."""
    return [KEYS[name] for name in names]


def stored_columns(server: Server) -> tuple[str | None, ...]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT private_key, passphrase, password FROM servers_server WHERE id = %s",
            [server.pk],
        )
        return cursor.fetchone()


@pytest.mark.django_db
def test_rotation_re_encrypts_every_secret_so_the_old_key_can_go(team, settings):
    settings.ENCRYPTION_KEYS = keys("A")
    with_password = Server.objects.create(
        team=team, name="pw", host="h", username="u", auth_method="password", password=PASSWORD
    )
    with_key = Server.objects.create(
        team=team, name="key", host="h", username="u", private_key="KEY", passphrase="phrase"
    )
    without = Server.objects.create(team=team, name="none", host="h", username="u")

    settings.ENCRYPTION_KEYS = keys("B", "A")
    out = io.StringIO()
    call_command("rotate_encryption_keys", stdout=out)
    assert "servers.Server: 2 re-encrypted with the newest key" in out.getvalue()

    settings.ENCRYPTION_KEYS = keys("B")
    assert Server.objects.get(pk=with_password.pk).password == PASSWORD
    with_key = Server.objects.get(pk=with_key.pk)
    assert (with_key.private_key, with_key.passphrase) == ("KEY", "phrase")
    assert stored_columns(without) == (None, None, None)


@pytest.mark.django_db
def test_rotation_refuses_and_changes_nothing_when_a_secret_cannot_be_decrypted(team, settings):
    settings.ENCRYPTION_KEYS = keys("A")
    readable = Server.objects.create(
        team=team, name="a", host="h", username="u", auth_method="password", password=PASSWORD
    )
    settings.ENCRYPTION_KEYS = keys("C")
    lost = Server.objects.create(
        team=team, name="c", host="h", username="u", auth_method="password", password=PASSWORD
    )
    before = {server.pk: stored_columns(server) for server in (readable, lost)}

    settings.ENCRYPTION_KEYS = keys("B", "A")  # C was dropped before its secrets were rotated
    with pytest.raises(CommandError, match=rf"servers.Server {lost.pk}: the stored password"):
        call_command("rotate_encryption_keys", stdout=io.StringIO())
    assert {server.pk: stored_columns(server) for server in (readable, lost)} == before
