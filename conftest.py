"""Fixtures shared by every app's tests: a real sshd, personas, and factories."""

from __future__ import annotations

import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from django.contrib.auth.models import User
from django.db import connection

from executions import services
from jobs.models import Job
from servers.models import Server

if TYPE_CHECKING:
    from servers.tests.sshd import LocalSshd

pytest_plugins = ["servers.tests.sshd"]


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
def make_server(sshd: LocalSshd) -> Callable[..., Server]:
    """A Server pointing at the shared sshd with a working key and its host key trusted."""
    counter = iter(range(1, 100_000))

    def make(target: LocalSshd | None = None, **fields: object) -> Server:
        target = target or sshd
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
def make_job() -> Callable[..., Job]:
    counter = iter(range(1, 100_000))

    def make(script: str, servers: list[Server], **fields: object) -> Job:
        fields.setdefault("name", f"job-{next(counter)}")
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
