"""A worker keeps a run's SSH connection for the next run on the same server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from executions import runner
from executions.models import Status
from executions.tests.helpers import output, run

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]


@pytest.fixture(autouse=True)
def no_connections_left_over() -> Iterator[None]:
    yield
    runner._connections.close_all()


def logins(server) -> int:
    return server.log_text().count("Accepted publickey")


def test_the_next_run_on_a_server_skips_the_login(make_sshd, make_server, make_job):
    fresh = make_sshd()
    job = make_job("echo $((6 * 7))", [make_server(fresh)])
    first, second = run(job), run(job)
    assert (first.status, second.status) == (Status.SUCCEEDED, Status.SUCCEEDED)
    assert output(first) == output(second) == b"42\n"
    assert logins(fresh) == 1


def test_servers_at_one_address_each_run_on_their_own_connection(make_sshd, make_server, make_job):
    fresh = make_sshd()
    job = make_job("echo hi", [make_server(fresh) for _ in range(4)], max_parallel=4)
    assert run(job).summary == "4 succeeded"
    assert run(job).summary == "4 succeeded"
    assert logins(fresh) == 4


def test_no_connection_is_kept_when_keeping_is_off(make_sshd, make_server, make_job, settings):
    settings.SSH_KEEP_IDLE_SECONDS = 0
    fresh = make_sshd()
    job = make_job("echo hi", [make_server(fresh)])
    run(job)
    run(job)
    assert logins(fresh) == 2
