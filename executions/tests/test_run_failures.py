"""Every way a host can fail gets a clear error on its host run, and nothing leaks."""

import socket

import pytest

from executions import services
from executions.models import Status
from executions.tests.helpers import output, run
from servers.models import Server
from tsubame.crypto import Undecryptable

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]


def only_host_run(execution):
    execution.refresh_from_db()
    return execution.host_runs.get()


def test_unknown_host_key_is_refused_before_authentication(make_server, make_job, make_sshd):
    fresh = make_sshd()
    server = make_server(fresh, host_key="")
    execution = run(make_job("touch /tmp/should-not-run", [server]))
    host_run = only_host_run(execution)
    assert execution.status == Status.FAILED
    assert host_run.status == Status.FAILED
    assert host_run.error.startswith("host key not trusted yet")
    assert fresh.host_key.fingerprint in host_run.error
    assert "Accepted" not in fresh.log_text()
    assert "Failed publickey" not in fresh.log_text()


def test_changed_host_key_is_refused_with_both_fingerprints(make_server, make_job, make_sshd):
    old, new = make_sshd(), make_sshd()
    server = make_server(new)
    server.trust_host_key(old.host_key, None)  # trusted earlier; the server now shows another
    execution = run(make_job("echo hi", [server]))
    host_run = only_host_run(execution)
    assert host_run.error == (
        f"host key changed: expected {old.host_key.fingerprint}, got {new.host_key.fingerprint}"
    )
    assert output(execution) == b""
    assert "Accepted" not in new.log_text()


def test_wrong_key_fails_with_auth_error(make_server, make_job, ssh_client_keys, tmp_path):
    import subprocess

    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "k")], check=True
    )
    server = make_server(private_key=(tmp_path / "k").read_text())
    host_run = only_host_run(run(make_job("echo hi", [server])))
    assert host_run.status == Status.FAILED
    assert "auth" in host_run.error.lower()


def test_unreachable_server_fails_quickly_with_clear_error(make_server, make_job):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    server = make_server(port=closed_port)
    host_run = only_host_run(run(make_job("echo hi", [server])))
    assert host_run.status == Status.FAILED
    assert "refused" in host_run.error.lower() or "unreachable" in host_run.error.lower()


def test_server_that_never_answers_times_out(make_server, make_job, settings):
    settings.SSH_CONNECT_TIMEOUT_SECONDS = 1.0
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)  # accepts TCP but never sends an SSH banner
        server = make_server(port=silent.getsockname()[1])
        host_run = only_host_run(run(make_job("echo hi", [server])))
    assert host_run.status == Status.FAILED
    assert host_run.error.endswith("sent no SSH banner within 1 s")


def test_undecryptable_secret_fails_closed(make_server, make_job, settings, sshd):
    server = make_server()
    # Rotate the key away without keeping the old one: the stored key cannot be decrypted.
    settings.ENCRYPTION_KEYS = ["Zm9vYmFyYmF6cXV4Zm9vYmFyYmF6cXV4Zm9vYmFyYmE="]
    server = Server.objects.get(pk=server.pk)
    assert isinstance(server.private_key, Undecryptable)
    before = sshd.log_text().count("Connection from")
    host_run = only_host_run(run(make_job("echo hi", [server])))
    assert host_run.status == Status.FAILED
    assert "cannot be decrypted" in host_run.error
    # Failing closed means not even connecting with a garbage key.
    assert sshd.log_text().count("Connection from") == before


def test_bad_runs_are_refused_before_queueing(make_server, make_job, queued):
    server = make_server()
    with pytest.raises(services.ExecutionError, match="disabled"):
        services.start_execution(make_job("true", [server], enabled=False), trigger="admin")
    with pytest.raises(services.ExecutionError, match="no target servers"):
        services.start_execution(make_job("true", []), trigger="admin")
    assert queued == []
