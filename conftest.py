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

from accounts.models import Membership, Role, Team
from accounts.roles import role_group
from executions import services
from jobs.models import Job
from servers.models import Server

if TYPE_CHECKING:
    from servers.tests.sshd import LocalSshd

pytest_plugins = ["servers.tests.sshd", "tsubame.tests.browser"]


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
    if not request.node.get_closest_marker("real_queue"):
        monkeypatch.setattr(services, "_enqueue", ids.append)
    return ids


@pytest.fixture(autouse=True)
def fast_password_hashing(settings: Any) -> None:
    # The default hasher is slow on purpose; tests that log in by password would crawl.
    settings.PASSWORD_HASHERS = ["accounts.tests.hashers.FastPBKDF2PasswordHasher"]


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
