"""Fixtures shared by every app's tests: a real sshd, personas, and factories."""

from __future__ import annotations

import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.db.models.signals import post_save
from django.http import HttpResponseBase
from django.test import Client

from accounts.models import ApiToken, Membership, Role, Team
from accounts.roles import role_group
from accounts.tests.leaks import SecretWatch
from executions import services
from jobs.models import Job, SecretVariable, Webhook
from notifications import destinations
from notifications import services as notification_services
from notifications.models import NotificationChannel
from servers.models import Server
from tsubame.crypto import SecretTextField

if TYPE_CHECKING:
    from servers.tests.sshd import LocalSshd

pytest_plugins = [
    "servers.tests.sshd",
    "servers.tests.arrivals",
    "tsubame.tests.browser",
    "executions.tests.brokers",
]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "real_queue: let start_execution hand work to the real django-q2 broker"
    )


@pytest.fixture(autouse=True)
def queued(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Execution ids handed to the task queue.

    Most tests run the worker's entry point themselves, in-process, so they record what
    would be queued instead of filling a broker nobody reads; tests marked `real_queue`
    go through django-q2 and a real worker process.
    """
    ids: list[int] = []

    def enqueue(execution_id: int) -> bool:
        ids.append(execution_id)
        return True

    if not request.node.get_closest_marker("real_queue"):
        monkeypatch.setattr(services, "_enqueue", enqueue)
    return ids


@pytest.fixture(autouse=True)
def fast_password_hashing(settings: Any) -> None:
    # The default hasher is slow on purpose; tests that log in by password would crawl.
    settings.PASSWORD_HASHERS = ["accounts.tests.hashers.FastPBKDF2PasswordHasher"]


@pytest.fixture(autouse=True)
def secret_watch(monkeypatch: pytest.MonkeyPatch) -> Iterator[SecretWatch]:
    """Fails any test whose responses show a stored secret (see accounts/tests/leaks.py)."""
    watch = SecretWatch()

    def server_saved(instance: Server, **kwargs: Any) -> None:
        watch.remember_private_key(instance.private_key, "a server's private key")
        watch.remember(instance.passphrase, "a server's key passphrase")
        watch.remember(instance.password, "a server's password")

    def token_saved(instance: ApiToken, **kwargs: Any) -> None:
        watch.remember(instance.token_hash, "an API token's hash")

    def secret_variable_saved(instance: SecretVariable, **kwargs: Any) -> None:
        watch.remember(instance.value, "a secret variable's value")

    encrypt = SecretTextField.get_prep_value

    def encrypt_and_remember(field: SecretTextField, value: Any) -> Any:
        stored = encrypt(field, value)
        watch.remember(stored, f"the ciphertext of a server's {field.name}")
        return stored

    new_secret = ApiToken.new_secret

    def new_secret_and_remember(token: ApiToken) -> str:
        text = new_secret(token)
        watch.remember_token_text(text)
        return text

    new_webhook_secret = Webhook.new_secret

    def new_webhook_secret_and_remember(webhook: Webhook) -> str:
        text = new_webhook_secret(webhook)
        watch.remember_token_text(text, "a webhook's secret")
        return text

    def channel_saved(instance: NotificationChannel, **kwargs: Any) -> None:
        watch.remember(instance.url, "a notification channel's URL")
        for part in destinations.secret_parts(instance.url):
            # Long enough to be a token rather than a word of the URL's path.
            if len(part) >= 12:
                watch.remember(part, "a part of a notification channel's URL")

    new_signing_secret = notification_services.new_signing_secret

    def new_signing_secret_and_remember() -> str:
        text = new_signing_secret()
        watch.remember_token_text(text, "a notification channel's signing secret")
        return text

    request = Client.request

    def request_and_check(client: Client, **kwargs: Any) -> HttpResponseBase:
        with watch.request_by(client):
            response = request(client, **kwargs)
        if not response.streaming:  # a streamed body is read by the test, once
            where = f"{kwargs.get('REQUEST_METHOD')} {kwargs.get('PATH_INFO')}"
            watch.check(response.content, status=response.status_code, where=where, client=client)
        return response

    monkeypatch.setattr(SecretTextField, "get_prep_value", encrypt_and_remember)
    monkeypatch.setattr(ApiToken, "new_secret", new_secret_and_remember)
    monkeypatch.setattr(Webhook, "new_secret", new_webhook_secret_and_remember)
    monkeypatch.setattr(Client, "request", request_and_check)
    monkeypatch.setattr(
        notification_services, "new_signing_secret", new_signing_secret_and_remember
    )
    post_save.connect(server_saved, sender=Server, weak=False)
    post_save.connect(token_saved, sender=ApiToken, weak=False)
    post_save.connect(secret_variable_saved, sender=SecretVariable, weak=False)
    post_save.connect(channel_saved, sender=NotificationChannel, weak=False)
    yield watch
    post_save.disconnect(server_saved, sender=Server)
    post_save.disconnect(token_saved, sender=ApiToken)
    post_save.disconnect(secret_variable_saved, sender=SecretVariable)
    post_save.disconnect(channel_saved, sender=NotificationChannel)


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory that both the tests and the sshd login user can write to."""
    path = Path(tempfile.mkdtemp(prefix="tsubame-shared-"))
    path.chmod(0o777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def superuser(django_user_model: type[User]) -> User:
    return django_user_model.objects.create_superuser("root", password="pw-root-123!")


@pytest.fixture
def team() -> Team:
    return Team.objects.create(name="ops")


@pytest.fixture
def other_team() -> Team:
    return Team.objects.create(name="elsewhere")


@pytest.fixture
def make_member(django_user_model: type[User]) -> Callable[..., User]:
    """A user holding `role` in `team` (staff, so the admin is open to them)."""

    def make(team: Team, role: Role, username: str | None = None) -> User:
        user = django_user_model.objects.create_user(
            username or f"{role}-of-{team.name}", password="pw-member-123!", is_staff=True
        )
        Membership.objects.create(team=team, user=user, role=role_group(role))
        return user

    return make


@pytest.fixture
def make_server(sshd: LocalSshd, team: Team) -> Callable[..., Server]:
    """A Server pointing at the shared sshd with a working key and its host key trusted."""
    counter = iter(range(1, 100_000))

    def make(target: LocalSshd | None = None, **fields: object) -> Server:
        target = target or sshd
        fields.setdefault("team", team)
        fields.setdefault("name", f"server-{next(counter)}")
        fields.setdefault("host", target.host)
        fields.setdefault("port", target.port)
        fields.setdefault("username", target.username)
        fields.setdefault("private_key", target.client_keys.private_key)
        server = Server.objects.create(**fields)
        if "host_key" not in fields:
            server.trust_host_key(target.host_key, None)
        return server

    return make


@pytest.fixture
def make_job(team: Team) -> Callable[..., Job]:
    counter = iter(range(1, 100_000))

    def make(script: str, servers: list[Server], **fields: object) -> Job:
        fields.setdefault("name", f"job-{next(counter)}")
        fields.setdefault("team", servers[0].team if servers else team)
        job = Job.objects.create(script=script, **fields)
        job.servers.set(servers)
        return job

    return make


@pytest.fixture
def in_background() -> Iterator[Callable[[Callable[[], None]], threading.Thread]]:
    threads: list[threading.Thread] = []

    def spawn(target: Callable[[], None]) -> threading.Thread:
        def run() -> None:
            try:
                target()
            finally:
                connection.close()  # each thread has its own; leaving it open blocks teardown

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        threads.append(thread)
        return thread

    yield spawn
    for thread in threads:
        thread.join(30)
