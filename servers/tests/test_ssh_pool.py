"""Connections kept between runs (servers.ssh.pool), against a real OpenSSH server."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from servers import ssh
from servers.ssh.pool import KEPT_OPEN_TIMEOUT_SECONDS
from servers.tests.sshd import LocalSshd

pytest_plugins = ["servers.tests.sshd"]

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def server(make_sshd) -> LocalSshd:
    """A fresh sshd, whose log counts this test's logins only."""
    return make_sshd()


@pytest.fixture
def pool() -> Iterator[ssh.ConnectionPool]:
    kept = ssh.ConnectionPool()
    yield kept
    kept.close_all()


def logins(server: LocalSshd) -> int:
    return server.log_text().count("Accepted publickey")


def echo(
    pool: ssh.ConnectionPool,
    target: ssh.Target,
    text: str = "hi",
    keep_seconds: float = 60,
    stop: threading.Event | None = None,
) -> tuple[ssh.RunResult, bytes]:
    output: list[bytes] = []
    result = pool.run(
        target,
        f"echo {text}".encode(),
        "/bin/sh",
        lambda stream, data: output.append(data),
        keep_seconds=keep_seconds,
        stop=stop or threading.Event(),
    )
    return result, b"".join(output)


def connection_processes(server: LocalSshd) -> list[int]:
    """The sshd processes serving this server's connections (below its listener)."""
    listener = int((server.directory / "sshd.pid").read_text())
    found, parents = [], [listener]
    while parents:
        listed = subprocess.run(
            ["pgrep", "-P", ",".join(map(str, parents))], capture_output=True, text=True
        )
        parents = [int(pid) for pid in listed.stdout.split()]
        found += parents
    return found


def test_the_next_run_on_the_same_server_takes_the_kept_connection(server, pool):
    target = server.target()
    assert echo(pool, target, "one") == (ssh.RunResult("exited", 0), b"one\n")
    assert echo(pool, target, "two") == (ssh.RunResult("exited", 0), b"two\n")
    assert logins(server) == 1


def test_with_nothing_to_keep_every_run_logs_in(server, pool):
    target = server.target()
    echo(pool, target, keep_seconds=0)
    echo(pool, target, keep_seconds=0)
    assert logins(server) == 2


def test_a_connection_is_never_shared_by_runs_at_the_same_time(server, pool):
    target = server.target()
    with ThreadPoolExecutor(5) as threads:
        first = list(threads.map(lambda n: echo(pool, target, str(n)), range(5)))
    assert logins(server) == 5
    # All five were kept, and five runs at once again need no new login.
    with ThreadPoolExecutor(5) as threads:
        second = list(threads.map(lambda n: echo(pool, target, str(n)), range(5)))
    assert logins(server) == 5
    assert [out for _, out in first + second] == [f"{n}\n".encode() for n in range(5)] * 2


def test_another_pinned_host_key_never_gets_a_kept_connection(server, make_sshd, pool):
    echo(pool, server.target())
    impostor_key = make_sshd().host_key
    # The same address and login, but pinned to a key this server does not hold: the kept
    # connection, verified under the other key, must not serve it.
    with pytest.raises(ssh.HostKeyChanged):
        echo(pool, server.target(host_key=impostor_key))


def test_other_credentials_never_get_a_kept_connection(server, pool):
    echo(pool, server.target())
    assert echo(pool, server.target(server.credentials(encrypted=True)))[1] == b"hi\n"
    assert logins(server) == 2


def test_a_cancelled_run_does_not_keep_its_connection(server, pool):
    stop = threading.Event()
    stop.set()
    target = server.target()
    echo(pool, target)
    assert echo(pool, target, stop=stop)[0].outcome == "cancelled"
    echo(pool, target)
    assert logins(server) == 2


def test_a_connection_the_server_dropped_is_replaced(server, pool):
    target = server.target()
    echo(pool, target, "before")
    for pid in connection_processes(server):
        os.kill(pid, signal.SIGKILL)
    assert echo(pool, target, "after") == (ssh.RunResult("exited", 0), b"after\n")
    assert logins(server) == 2


def test_a_kept_connection_that_stopped_answering_is_replaced_quickly(server, pool):
    target = server.target(connect_timeout=30)
    echo(pool, target, "before")
    stalled = connection_processes(server)
    for pid in stalled:
        os.kill(pid, signal.SIGSTOP)
    try:
        result = ThreadPoolExecutor(1).submit(echo, pool, target, "after")
        # Within the short wait for a kept connection, not the target's 30 s.
        assert result.result(timeout=KEPT_OPEN_TIMEOUT_SECONDS + 15) == (
            ssh.RunResult("exited", 0),
            b"after\n",
        )
    finally:
        for pid in stalled:
            os.kill(pid, signal.SIGKILL)
            os.kill(pid, signal.SIGCONT)
    assert logins(server) == 2


def test_an_idle_connection_is_closed_when_its_time_is_up(server, pool):
    echo(pool, server.target(), keep_seconds=0.5)
    assert "Closing connection" not in server.log_text()  # kept
    server.wait_for_log(r"Closing connection to 127\.0\.0\.1", timeout=10)
