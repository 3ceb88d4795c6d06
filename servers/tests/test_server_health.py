"""What the server list and the dashboard show of a server's health follows the newest news:
a test, a host-key trust or a run."""

from __future__ import annotations

from datetime import timedelta

import paramiko
import pytest
from django.utils import timezone

from accounts.models import Source
from executions.models import HostRun, Status
from executions.tests.helpers import run
from servers import services, ssh
from servers.models import Server

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]


RAN = "a run got through and ran its script"


def another_key() -> ssh.HostKey:
    return ssh.HostKey.from_pkey(paramiko.ECDSAKey.generate())


def health(server: Server) -> tuple[str, str]:
    server.refresh_from_db()
    return server.last_check_status, server.last_check_message


def test_a_trust_then_runs_replace_a_failed_host_key_test(
    make_server, make_job, sshd, superuser
) -> None:
    server = make_server(host_key="")
    server.trust_host_key(another_key(), None)  # the key it had before it was re-installed
    assert services.check_connection(server).status == "host_key_changed"
    assert health(server)[0] == "host_key_changed"

    services.trust_offered_host_key(
        server, sshd.host_key.fingerprint, by=superuser, source=Source.UI
    )
    assert health(server) == ("", "")  # the failure was about the key trusted before

    execution = run(make_job("exit 3", [server]))
    assert execution.status == Status.FAILED  # the script failed, the server did not
    assert health(server) == ("ok", RAN)
    server.refresh_from_db()
    assert server.last_check_at == execution.host_runs.get().finished_at


def test_trusting_the_same_key_again_keeps_what_is_known(make_server, sshd, superuser) -> None:
    server = make_server()
    check = services.check_connection(server)
    assert check.status == "ok"
    services.trust_offered_host_key(
        server, sshd.host_key.fingerprint, by=superuser, source=Source.UI
    )
    assert health(server) == ("ok", check.message)


def test_a_run_that_cannot_get_through_says_why(make_server, make_job) -> None:
    server = make_server(host_key="")
    run(make_job("true", [server]))
    status, message = health(server)
    assert status == "run_failed"
    assert message.startswith("host key not trusted yet")


def test_a_run_older_than_the_last_test_changes_nothing(make_server, make_job) -> None:
    server = make_server()
    Server.objects.filter(pk=server.pk).update(
        host_key_trusted_at=timezone.now() - timedelta(hours=2)
    )
    services.check_connection(server)
    execution = run(make_job("true", [server]), servers=[server])
    HostRun.objects.filter(execution=execution).update(
        error="the connection to the server was lost",
        exit_code=None,
        status=Status.FAILED,
        finished_at=timezone.now() - timedelta(hours=1),
    )
    check = services.check_connection(server)
    services.record_run_results(HostRun.objects.filter(execution=execution))
    assert health(server) == ("ok", check.message)
    # The same run, newer than the test: it counts.
    HostRun.objects.filter(execution=execution).update(finished_at=timezone.now())
    services.record_run_results(HostRun.objects.filter(execution=execution))
    assert health(server) == ("run_failed", "the connection to the server was lost")


def test_a_run_older_than_the_trust_of_a_new_key_changes_nothing(
    make_server, make_job, sshd, superuser
) -> None:
    server = make_server(host_key="")
    execution = run(make_job("true", [server]))
    assert health(server)[0] == "run_failed"
    services.trust_offered_host_key(
        server, sshd.host_key.fingerprint, by=superuser, source=Source.UI
    )
    services.record_run_results(HostRun.objects.filter(execution=execution))
    assert health(server) == ("", "")


def test_a_cancelled_run_says_nothing(make_server, make_job) -> None:
    server = make_server()
    execution = run(make_job("true", [server]))
    HostRun.objects.filter(execution=execution).update(
        status=Status.CANCELLED,
        exit_code=None,
        error="cancelled",
        finished_at=timezone.now() + timedelta(hours=1),
    )
    check = services.check_connection(server)
    services.record_run_results(HostRun.objects.filter(execution=execution))
    assert health(server) == ("ok", check.message)
