"""The SSH layer against a real OpenSSH server on 127.0.0.1.

Remote processes are local processes here, so `pgrep -f TOKEN` sees what a script left behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import tracemalloc
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from servers import ssh
from servers.ssh.remote import MISSED_HEARTBEATS, environment_block, wrapper_command

if TYPE_CHECKING:
    from servers.tests.sshd import LocalSshd

# Also declared by the root conftest; repeated so `pytest --noconftest` works without Django.
pytest_plugins = ["servers.tests.sshd"]

pytestmark = pytest.mark.timeout(180)

REPO = Path(__file__).resolve().parents[2]
MIB = 1024 * 1024


class Output:
    """An on_output callback that keeps what it received, per stream."""

    def __init__(self) -> None:
        self.streams: dict[str, bytearray] = {"stdout": bytearray(), "stderr": bytearray()}
        self.changed = threading.Condition()

    def __call__(self, stream: ssh.Stream, data: bytes) -> None:
        with self.changed:
            self.streams[stream] += data
            self.changed.notify_all()

    @property
    def stdout(self) -> bytes:
        return bytes(self.streams["stdout"])

    @property
    def stderr(self) -> bytes:
        return bytes(self.streams["stderr"])

    def wait_for(self, text: bytes, timeout: float = 10) -> None:
        with self.changed:
            if not self.changed.wait_for(lambda: text in self.streams["stdout"], timeout):
                raise AssertionError(f"{text!r} never appeared; stdout: {self.stdout!r}")


class Digest:
    """An on_output callback that hashes instead of keeping: memory stays flat."""

    def __init__(self) -> None:
        self.hashes = {"stdout": hashlib.sha256(), "stderr": hashlib.sha256()}
        self.sizes = {"stdout": 0, "stderr": 0}

    def __call__(self, stream: ssh.Stream, data: bytes) -> None:
        self.hashes[stream].update(data)
        self.sizes[stream] += len(data)


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {timeout} s waiting until {what}")
        time.sleep(0.05)


def pids_tagged(token: str) -> list[int]:
    found = subprocess.run(["pgrep", "-f", token], capture_output=True, text=True)
    return [int(pid) for pid in found.stdout.split()]


@pytest.fixture
def token() -> Iterator[str]:
    """A unique tag for remote processes; whatever still carries it is killed afterwards."""
    value = f"tsubame-test-{uuid.uuid4().hex}"
    yield value
    for pid in pids_tagged(value):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@pytest.fixture
def session(sshd: LocalSshd) -> Iterator[ssh.Session]:
    with ssh.connect(sshd.target()) as opened:
        yield opened


def run(
    session: ssh.Session, script: str | bytes, interpreter: str = "/bin/bash", **options: Any
) -> tuple[ssh.RunResult, Output]:
    output = Output()
    stop = options.pop("stop", threading.Event())
    data = script.encode() if isinstance(script, str) else script
    result = session.run(data, interpreter, output, stop=stop, **options)
    return result, output


def tree_script(token: str, *, ignore_term: bool) -> str:
    """Children and grandchildren, each a `sleep` whose argv[0] carries the token."""
    return "\n".join(
        [
            'trap "" TERM' if ignore_term else "",
            f"(exec -a {token}-child1 sleep 1000) &",
            f"(exec -a {token}-child2 sleep 1000) &",
            f"( (exec -a {token}-grandchild sleep 1000) & )",
            f"bash -c '(exec -a {token}-grandchild2 sleep 1000) & wait' &",
            'echo "started $0"',  # $0: the temp file holding this script
            "wait",
        ]
    )


def wait_until_remote_is_clean(token: str, stdout: bytes, timeout: float) -> None:
    """No tagged process and no script file (named on tree_script's "started" line) is left."""
    script_file = Path(re.search(rb"started (\S+)", stdout)[1].decode())  # type: ignore[index]
    wait_until(
        lambda: not pids_tagged(token) and not script_file.exists(),
        timeout,
        "no tagged process and no script file is left",
    )


def silent_listener() -> socket.socket:
    """Accepts TCP connections (the kernel does) but never says a word."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    return listener


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# Host keys


def test_fetched_host_key_has_the_fingerprint_ssh_keygen_prints(make_sshd) -> None:
    server = make_sshd(host_key_types=("ed25519", "rsa"))
    for key_type in ("ed25519", "rsa"):
        printed = subprocess.run(
            ["ssh-keygen", "-lf", str(server.host_key_file(key_type))],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()[1]
        assert server.host_keys[f"ssh-{key_type}"].fingerprint == printed
    fetched = ssh.fetch_host_key(server.host, server.port)
    assert fetched == server.host_keys["ssh-ed25519"]
    assert fetched.fingerprint == server.host_keys["ssh-ed25519"].fingerprint


class Tripwire:
    """Credentials that fail the test if anything reads them."""

    def __getattr__(self, name: str) -> object:
        raise AssertionError(f"credentials.{name} was read before the host key was checked")


@pytest.mark.parametrize("pinned", ["unknown", "changed"])
def test_untrusted_host_key_is_refused_before_any_authentication(make_sshd, pinned) -> None:
    server = make_sshd()
    other = make_sshd()
    host_key = None if pinned == "unknown" else other.host_key
    target = server.target(Tripwire(), host_key=host_key)  # type: ignore[arg-type]
    expected = ssh.HostKeyUnknown if pinned == "unknown" else ssh.HostKeyChanged
    with pytest.raises(expected):
        ssh.connect(target)
    # "[preauth]" marks our client's hang-up (the readiness probe's line lacks it); had any
    # authentication been tried, sshd would say "closed by authenticating user".
    server.wait_for_log(r"Connection (closed|reset) by 127\.0\.0\.1 port \d+ \[preauth\]")
    log = server.log_text()
    for sign_of_auth in ("publickey", "password", "authenticating user", "Accepted", "Failed"):
        assert sign_of_auth not in log


def test_unknown_host_key_error_offers_the_fingerprint(sshd: LocalSshd) -> None:
    with pytest.raises(ssh.HostKeyUnknown) as caught:
        ssh.connect(sshd.target(host_key=None))
    offers = sshd.host_key.fingerprint
    assert str(caught.value) == f"host key not trusted yet: server offers {offers}"
    assert caught.value.offered == sshd.host_key
    assert caught.value.kind == "host_key_unknown"


def test_changed_host_key_error_names_both_fingerprints(sshd: LocalSshd, make_sshd) -> None:
    impostor = make_sshd()
    with pytest.raises(ssh.HostKeyChanged) as caught:
        ssh.connect(impostor.target(host_key=sshd.host_key))
    assert str(caught.value) == (
        f"host key changed: expected {sshd.host_key.fingerprint}, "
        f"got {impostor.host_key.fingerprint}"
    )


@pytest.mark.parametrize("key_type", ["ssh-rsa", "ssh-ed25519"])
def test_pinned_key_type_is_negotiated_on_a_server_with_several_keys(make_sshd, key_type) -> None:
    server = make_sshd(host_key_types=("ed25519", "rsa"))
    # Left to its defaults the client negotiates ed25519, so an rsa pin would look "changed".
    assert ssh.fetch_host_key(server.host, server.port).key_type == "ssh-ed25519"
    with ssh.connect(server.target(host_key=server.host_keys[key_type])) as session:
        result, output = run(session, "echo connected")
    assert (result.exit_code, output.stdout) == (0, b"connected\n")


# Authentication


def test_key_the_server_does_not_know_is_auth_failed(sshd: LocalSshd, tmp_path: Path) -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "stranger")],
        check=True,
    )
    stranger = ssh.Credentials(private_key=(tmp_path / "stranger").read_text())
    with pytest.raises(ssh.AuthFailed):
        ssh.connect(sshd.target(stranger))


def test_encrypted_key_with_the_right_passphrase_connects(sshd: LocalSshd) -> None:
    with ssh.connect(sshd.target(sshd.credentials(encrypted=True))) as session:
        result, _ = run(session, "true")
    assert result.exit_code == 0


@pytest.mark.parametrize(
    ("passphrase", "message"),
    [("wrong", "wrong passphrase"), (None, "give its passphrase")],
)
def test_encrypted_key_without_the_right_passphrase_is_a_credential_error(
    sshd: LocalSshd, passphrase, message
) -> None:
    credentials = ssh.Credentials(
        private_key=sshd.client_keys.encrypted_private_key, passphrase=passphrase
    )
    with pytest.raises(ssh.CredentialError, match=message):
        ssh.connect(sshd.target(credentials))


@pytest.mark.parametrize(
    "credentials",
    [
        ssh.Credentials(private_key="-----BEGIN OPENSSH PRIVATE KEY-----\nnonsense\n"),
        ssh.Credentials(private_key="not a key at all"),
        ssh.Credentials(),
    ],
    ids=["corrupt", "garbage", "nothing"],
)
def test_unusable_credentials_are_a_credential_error(sshd: LocalSshd, credentials) -> None:
    with pytest.raises(ssh.CredentialError):
        ssh.connect(sshd.target(credentials))


@pytest.mark.parametrize("key_type", ["ecdsa", "rsa"])
def test_ecdsa_and_pem_rsa_keys_are_parsed(tmp_path: Path, key_type) -> None:
    path = tmp_path / key_type
    pem = ["-m", "PEM"] if key_type == "rsa" else []
    subprocess.run(
        ["ssh-keygen", "-q", "-t", key_type, *pem, "-N", "secret", "-f", str(path)], check=True
    )
    credentials = ssh.Credentials(private_key=path.read_text(), passphrase="secret")
    key = ssh.load_private_key(credentials)
    assert f"{key.get_name()} {key.get_base64()}" in Path(f"{path}.pub").read_text()


@pytest.fixture
def user_password(sshd: LocalSshd) -> Iterator[str]:
    """A password for the test user, for as long as the test runs (root only)."""
    if os.geteuid() != 0:
        pytest.skip("setting the test user's password needs root")
    password = uuid.uuid4().hex
    hashed = subprocess.run(
        ["openssl", "passwd", "-6", "-stdin"],
        input=password,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    subprocess.run(["usermod", "-p", hashed, sshd.username], check=True)
    yield password
    subprocess.run(["usermod", "-p", "*", sshd.username], check=True)


def test_password_authentication_logs_in(make_sshd, user_password: str) -> None:
    server = make_sshd(extra_config={"PasswordAuthentication": "yes"})
    with ssh.connect(server.target(ssh.Credentials(password=user_password))) as session:
        result, output = run(session, "whoami")
    assert (result.exit_code, output.stdout) == (0, f"{server.username}\n".encode())
    with pytest.raises(ssh.AuthFailed):
        ssh.connect(server.target(ssh.Credentials(password=user_password + "x")))


def test_password_is_refused_by_a_key_only_server(sshd: LocalSshd) -> None:
    with pytest.raises(ssh.AuthFailed, match="publickey"):
        ssh.connect(sshd.target(ssh.Credentials(password="hunter2")))


# Reaching the server


def test_closed_port_is_unreachable(sshd: LocalSshd) -> None:
    with pytest.raises(ssh.Unreachable):
        ssh.connect(sshd.target(port=closed_port()))


def test_server_that_never_answers_is_a_timeout(sshd: LocalSshd) -> None:
    with silent_listener() as listener:
        target = sshd.target(port=listener.getsockname()[1], connect_timeout=0.5)
        started = time.monotonic()
        with pytest.raises(ssh.ConnectTimeout):
            ssh.connect(target)
    assert time.monotonic() - started < 5


def test_check_connection_reports_each_status(sshd: LocalSshd, make_sshd) -> None:
    assert ssh.check_connection(sshd.target()).status == "ok"
    assert ssh.check_connection(sshd.target()).latency_ms > 0
    stranger = ssh.Credentials(private_key=sshd.client_keys.encrypted_private_key, passphrase="x")
    assert ssh.check_connection(sshd.target(stranger)).status == "credential_error"
    assert ssh.check_connection(sshd.target(ssh.Credentials(password="x"))).status == "auth_failed"
    impostor = make_sshd()
    changed = ssh.check_connection(impostor.target(host_key=sshd.host_key))
    assert (changed.status, changed.latency_ms) == ("host_key_changed", None)
    assert changed.message.startswith("host key changed: expected SHA256:")
    assert ssh.check_connection(sshd.target(host_key=None)).status == "host_key_unknown"
    assert ssh.check_connection(sshd.target(port=closed_port())).status == "unreachable"
    with silent_listener() as listener:
        silent = sshd.target(port=listener.getsockname()[1], connect_timeout=0.5)
        assert ssh.check_connection(silent).status == "timeout"


def test_fifty_simultaneous_connections_survive_default_max_startups(sshd_default) -> None:
    start = threading.Barrier(50)

    def echo(_: int) -> tuple[ssh.RunResult, bytes]:
        start.wait()
        with ssh.connect(sshd_default.target()) as session:
            result, output = run(session, "echo hi")
        return result, output.stdout

    with ThreadPoolExecutor(50) as pool:
        results = list(pool.map(echo, range(50)))
    assert results == [(ssh.RunResult("exited", 0), b"hi\n")] * 50
    # The per-host handshake limit keeps sshd under MaxStartups: without it most of the 50 are
    # dropped at first. sshd learns that a login finished a moment after the client does, so on
    # a busy machine one or two handshakes can still be dropped (and are retried).
    assert sshd_default.log_text().count("past MaxStartups") <= 3


class DroppingProxy:
    """Forwards to an sshd but hangs up on the first `drop` connections, as sshd does when
    MaxStartups is exceeded."""

    def __init__(self, upstream_port: int, drop: int) -> None:
        self.upstream_port = upstream_port
        self.drop = drop
        self.connections = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            if self.connections <= self.drop:
                client.close()
                continue
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            self.sockets += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
            sink.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        for sock in [self.listener, *self.sockets]:
            sock.close()


@pytest.fixture
def dropping_proxy(sshd: LocalSshd) -> Iterator[Callable[[int], DroppingProxy]]:
    proxies: list[DroppingProxy] = []

    def make(drop: int) -> DroppingProxy:
        proxies.append(DroppingProxy(sshd.port, drop))
        return proxies[-1]

    yield make
    for proxy in proxies:
        proxy.close()


def test_handshake_dropped_by_the_server_is_retried(sshd: LocalSshd, dropping_proxy) -> None:
    proxy = dropping_proxy(drop=2)
    with ssh.connect(sshd.target(port=proxy.port)) as session:
        result, _ = run(session, "true")
    assert (result.exit_code, proxy.connections) == (0, 3)


def test_handshake_dropped_three_times_gives_up(sshd: LocalSshd, dropping_proxy) -> None:
    proxy = dropping_proxy(drop=100)
    with pytest.raises(ssh.ProtocolError, match="3 times"):
        ssh.connect(sshd.target(port=proxy.port))
    assert proxy.connections == 3


def test_failed_authentication_is_not_retried(sshd: LocalSshd, dropping_proxy) -> None:
    proxy = dropping_proxy(drop=0)
    with pytest.raises(ssh.AuthFailed):
        ssh.connect(sshd.target(ssh.Credentials(password="wrong"), port=proxy.port))
    with pytest.raises(ssh.HostKeyUnknown):
        ssh.connect(sshd.target(port=proxy.port, host_key=None))
    assert proxy.connections == 2


# Running scripts


@pytest.mark.parametrize("code", [0, 1, 42, 255])
def test_exit_code_is_reported(session: ssh.Session, code: int) -> None:
    result, _ = run(session, f"exit {code}")
    assert result == ssh.RunResult("exited", code)


def test_stdout_and_stderr_are_kept_apart(session: ssh.Session) -> None:
    result, output = run(session, "echo out; echo err >&2; echo out2; echo err2 >&2")
    assert (output.stdout, output.stderr) == (b"out\nout2\n", b"err\nerr2\n")
    assert result.exit_code == 0


def test_binary_output_is_byte_exact(session: ssh.Session) -> None:
    script = (
        "import sys\n"
        "sys.stdout.buffer.write(bytes(range(256)) * 3)\n"
        "sys.stderr.buffer.write(bytes(reversed(range(256))))\n"
    )
    result, output = run(session, script, "/usr/bin/python3")
    assert output.stdout == bytes(range(256)) * 3
    assert output.stderr == bytes(reversed(range(256)))
    assert result.exit_code == 0


def pattern(label: str, size: int) -> bytes:
    """Bytes where any loss, duplication or reordering changes the hash."""
    blocks = (hashlib.sha256(f"{label}{i}".encode()).digest() for i in range(size // 32))
    return b"".join(blocks)


def test_ten_mib_on_both_streams_at_once_arrive_complete(session: ssh.Session) -> None:
    # Two writers at once: a client that drains one stream until EOF deadlocks at 2 MiB.
    writer = (
        "import hashlib, sys\n"
        "out = getattr(sys, sys.argv[1]).buffer\n"
        "for i in range(10 * 1024 * 1024 // 32):\n"
        "    out.write(hashlib.sha256(f'{sys.argv[1]}{i}'.encode()).digest())\n"
    )
    script = f'w="{writer}"\npython3 -c "$w" stdout & python3 -c "$w" stderr & wait\n'
    digest = Digest()
    result = session.run(script.encode(), "/bin/bash", digest, stop=threading.Event())
    assert result.exit_code == 0
    for stream in ("stdout", "stderr"):
        assert digest.sizes[stream] == 10 * MIB
        assert digest.hashes[stream].digest() == hashlib.sha256(pattern(stream, 10 * MIB)).digest()


def test_memory_stays_flat_whatever_the_output_size(session: ssh.Session) -> None:
    digest = Digest()
    tracemalloc.start()
    try:
        result = session.run(
            b"head -c 52428800 /dev/zero", "/bin/bash", digest, stop=threading.Event()
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (result.exit_code, digest.sizes["stdout"]) == (0, 50 * MIB)
    # paramiko buffers at most one channel window (2 MiB); nothing piles up in `run`.
    assert peak < 8 * MIB


def test_blocking_output_callback_slows_the_remote_without_losing_data(
    session: ssh.Session,
) -> None:
    received = bytearray()

    def slow(stream: ssh.Stream, data: bytes) -> None:
        if len(received) // MIB != (len(received) + len(data)) // MIB:
            time.sleep(0.3)  # the caller applying backpressure
        received.extend(data)

    script = "head -c 5242880 /dev/urandom | tee /dev/stderr | sha256sum >&2"
    result = session.run(script.encode(), "/bin/bash", slow, stop=threading.Event())
    assert result.exit_code == 0
    # stderr carries the data again followed by its checksum line; stdout is empty.
    data, checksum = bytes(received[: 5 * MIB]), bytes(received[5 * MIB :])
    assert checksum.split()[0].decode() == hashlib.sha256(data).hexdigest()


def test_script_larger_than_200_kib_runs(session: ssh.Session) -> None:
    script = "n=0\n" + "n=$((n + 1))\n" * 20_000 + "echo $n\n"
    assert len(script) > 200 * 1024
    result, output = run(session, script)
    assert (result.exit_code, output.stdout) == (0, b"20000\n")


def test_python_interpreter_runs_the_script(session: ssh.Session) -> None:
    script = "import sys\nprint('python', sys.version_info[0])\nsys.exit(7)\n"
    result, output = run(session, script, "/usr/bin/python3")
    assert (result.exit_code, output.stdout) == (7, b"python 3\n")


def test_run_with_stop_already_set_starts_nothing(session: ssh.Session, token: str) -> None:
    stop = threading.Event()
    stop.set()
    result, output = run(session, f"exec -a {token} sleep 60", stop=stop)
    assert (result, output.stdout, pids_tagged(token)) == (
        ssh.RunResult("cancelled", None),
        b"",
        [],
    )


def test_script_stdin_is_at_eof(session: ssh.Session) -> None:
    result, output = run(session, "cat; echo done")
    assert (result.exit_code, output.stdout) == (0, b"done\n")


def test_script_leaves_no_temp_file_behind(session: ssh.Session) -> None:
    result, output = run(session, 'echo "$0"')
    assert result.exit_code == 0
    assert not Path(output.stdout.decode().strip()).exists()


def test_remote_command_has_no_quote_backslash_or_newline() -> None:
    # fish treats backslashes inside single quotes specially and csh rejects newlines there.
    command = wrapper_command(123, "/usr/bin/python3", 2.5, 0.5)
    assert command.startswith("exec /bin/sh -c '")
    assert command.endswith("'")
    body = command.removeprefix("exec /bin/sh -c '").removesuffix("'")
    assert not {"'", "\\", "\n"} & set(body)


@pytest.mark.parametrize(
    "shell", ["/bin/dash", "/bin/bash", "/usr/bin/zsh", "/usr/bin/fish", "/usr/bin/tcsh"]
)
def test_remote_command_works_under_any_login_shell(shell: str) -> None:
    if not Path(shell).exists():
        pytest.skip(f"{shell} is not installed")
    script = b'printf "%s|" ok "$GREETING"; exit 3'
    greeting = 'it\'s "$HOME" `id` \\!\n'
    # What sshd does with a command: `$SHELL -c COMMAND` in a new session (so that the
    # watcher's `kill 0` could never reach pytest), stdin kept open until the end.
    remote = subprocess.Popen(
        [shell, "-c", wrapper_command(len(script), "/bin/sh", 1, 10)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    assert remote.stdin is not None
    assert remote.stdout is not None
    try:
        remote.stdin.write(environment_block({"GREETING": greeting}) + script)
        remote.stdin.flush()
        assert remote.stdout.read() == f"ok|{greeting}|".encode()
        assert remote.wait(10) == 3
    finally:
        remote.stdin.close()


def start_wrapper(
    shell: list[str],
    script: bytes,
    heartbeat: float,
    environment: dict[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """The wrapper's body run by `shell` as if it were /bin/sh, the way sshd runs a command
    (a new session, stdin open until we close it), with the environment and script sent."""
    command = wrapper_command(len(script), "/bin/bash", 0.5, heartbeat)
    body = command.removeprefix("exec /bin/sh -c '").removesuffix("'")
    remote = subprocess.Popen(
        [*shell, "-c", body], stdin=subprocess.PIPE, stdout=subprocess.PIPE, start_new_session=True
    )
    assert remote.stdin is not None
    remote.stdin.write(environment_block(environment or {}) + script)
    remote.stdin.flush()
    return remote


# /bin/sh is dash on Debian, bash on Red Hat and busybox's ash on Alpine.
SYSTEM_SHELLS = {"dash": ["/bin/dash"], "bash": ["/bin/bash"], "busybox": ["/bin/busybox", "sh"]}


@pytest.mark.parametrize("shell", SYSTEM_SHELLS.values(), ids=SYSTEM_SHELLS.keys())
def test_remote_stops_the_script_once_the_client_falls_silent(shell: list[str], token: str) -> None:
    if not Path(shell[0]).exists():
        pytest.skip(f"{shell[0]} is not installed")
    script = b'echo "$0"; exec -a "$TAG" sleep 60'
    remote = start_wrapper(shell, script, 0.2, {"TAG": token})
    assert remote.stdin is not None
    assert remote.stdout is not None
    try:
        script_file = Path(remote.stdout.readline().decode().strip())
        for _beat in range(20):  # ten heartbeat intervals, where three silent ones stop it
            remote.stdin.write(b"\n")
            remote.stdin.flush()
            time.sleep(0.1)
        assert pids_tagged(token)
        # Then a partition: stdin stays open, no EOF ever comes, and no heartbeat either.
        wait_until(lambda: not pids_tagged(token), 10, "the silent client's script is stopped")
        assert remote.wait(10) == 143
        assert not script_file.exists()
    finally:
        remote.stdin.close()
        remote.kill()


def test_heartbeats_keep_a_script_alive_past_the_silence_limit(session: ssh.Session) -> None:
    # Ten heartbeat intervals: without heartbeats the remote would stop it after three.
    result, output = run(session, "sleep 2; echo done", heartbeat=0.2)
    assert (result, output.stdout) == (ssh.RunResult("exited", 0), b"done\n")


def test_blocked_output_callback_does_not_look_like_a_dead_client(session: ssh.Session) -> None:
    def stuck(stream: ssh.Stream, data: bytes) -> None:
        output(stream, data)
        time.sleep(2)  # storage stalls for ten heartbeat intervals

    output = Output()
    script = b"echo first; sleep 1; echo second"
    result = session.run(script, "/bin/bash", stuck, stop=threading.Event(), heartbeat=0.2)
    assert (result, output.stdout) == (ssh.RunResult("exited", 0), b"first\nsecond\n")


@pytest.mark.skipif(not hasattr(socket, "TCP_USER_TIMEOUT"), reason="Linux only")
def test_client_outwaits_what_a_silent_server_may_still_run(sshd: LocalSshd) -> None:
    # Reported lost while the remote script still runs, a re-run would run it twice at once.
    with ssh.connect(sshd.target()) as session:
        run(session, "true", heartbeat=30, kill_grace=5)
        sock = session._transport.sock
        waits = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) / 1000
    assert waits > (MISSED_HEARTBEATS + 1) * 30 + 5


def test_normal_exit_leaves_no_heartbeat_clock_behind(session: ssh.Session) -> None:
    heartbeat = 50 + uuid.uuid4().int % 999 / 1000 + 0.001  # a `sleep` no one else runs
    clock = f"^sleep {heartbeat:.3f}$"
    # The script ends once the clock is ticking, so that there is a clock to leave behind.
    script = f'for i in $(seq 200); do pgrep -f "{clock}" && exit; sleep 0.05; done; exit 1'
    result, _ = run(session, script, heartbeat=heartbeat)
    assert result == ssh.RunResult("exited", 0)
    # The clock is told to stop as the wrapper exits; on a busy machine it takes a moment.
    # Left behind, it would sleep on for 50 s.
    wait_until(
        lambda: subprocess.run(["pgrep", "-f", clock]).returncode == 1, 5, "the clock to stop"
    )


def test_relative_interpreter_is_rejected(session: ssh.Session) -> None:
    with pytest.raises(ValueError, match="absolute path"):
        run(session, "true", "bash")


def test_one_session_runs_several_scripts(session: ssh.Session) -> None:
    for number in range(3):
        _, output = run(session, f"echo {number}")
        assert output.stdout == f"{number}\n".encode()


def test_background_process_holding_stdout_does_not_hang_the_run(
    session: ssh.Session, token: str
) -> None:
    started = time.monotonic()
    result, output = run(session, f"(exec -a {token} sleep 60) &\necho done")
    assert (result.outcome, result.exit_code, output.stdout) == ("exited", 0, b"done\n")
    assert time.monotonic() - started < ssh.EXIT_DRAIN_SECONDS + 3


def test_daemon_started_on_purpose_survives_a_normal_finish(
    session: ssh.Session, token: str
) -> None:
    result, _ = run(session, f"(exec -a {token} sleep 60) >/dev/null 2>&1 &", kill_grace=0.2)
    assert result.exit_code == 0
    # Nothing to wait on for "still alive": give a watcher time to misbehave, then look.
    time.sleep(1.0)
    assert len(pids_tagged(token)) == 1


# Under a terminal sshd never passes stdin EOF on, and the group gets a HUP at the end.
WITH_AND_WITHOUT_TERMINAL = pytest.mark.parametrize(
    "terminal", [False, True], ids=["no-terminal", "terminal"]
)


@WITH_AND_WITHOUT_TERMINAL
@pytest.mark.parametrize("ignore_term", [False, True], ids=["plain", "traps-term"])
def test_cancel_kills_the_whole_remote_tree(
    session: ssh.Session, token: str, ignore_term: bool, terminal: bool
) -> None:
    stop = threading.Event()
    output = Output()
    results: list[ssh.RunResult] = []
    script = tree_script(token, ignore_term=ignore_term).encode()
    runner = threading.Thread(
        target=lambda: results.append(
            session.run(script, "/bin/bash", output, stop=stop, terminal=terminal)
        )
    )
    runner.start()
    output.wait_for(b"started")
    wait_until(lambda: len(pids_tagged(token)) >= 4, 5, "the four sleepers run")
    stop.set()
    cancelled_at = time.monotonic()
    runner.join(10)
    assert time.monotonic() - cancelled_at < 5
    [result] = results
    assert result.outcome == "cancelled"
    if ignore_term:
        assert (result.exit_code, result.signal) == (None, "KILL")
    else:
        assert result.exit_code == 143
    wait_until_remote_is_clean(token, output.stdout, 2)


def test_failing_output_callback_still_stops_the_remote(session: ssh.Session, token: str) -> None:
    def explode(stream: ssh.Stream, data: bytes) -> None:
        raise RuntimeError("the caller's storage broke")

    with pytest.raises(RuntimeError, match="storage broke"):
        session.run(
            tree_script(token, ignore_term=False).encode(),
            "/bin/bash",
            explode,
            stop=threading.Event(),
        )
    wait_until(lambda: not pids_tagged(token), 5, "no tagged process is left")


@WITH_AND_WITHOUT_TERMINAL
def test_timeout_kills_the_whole_remote_tree(
    session: ssh.Session, token: str, terminal: bool
) -> None:
    started = time.monotonic()
    script = tree_script(token, ignore_term=True)
    result, output = run(session, script, timeout=1, kill_grace=1, terminal=terminal)
    assert result.outcome == "timed_out"
    assert output.stdout.startswith(b"started ")
    assert time.monotonic() - started < 1 + 5
    wait_until_remote_is_clean(token, output.stdout, 2)


# Reads its instructions from stdin so that `pgrep -f TOKEN` does not match the client itself.
KILLED_CLIENT = """
import json, sys, threading
sys.path.insert(0, sys.argv[1])
from servers import ssh
spec = json.loads(sys.stdin.readline())
target = ssh.Target(
    spec["host"], spec["port"], spec["username"], ssh.Credentials(private_key=spec["key"]),
    ssh.HostKey(*spec["host_key"]),
)
def show(stream, data):
    sys.stdout.buffer.write(data)
    sys.stdout.flush()
with ssh.connect(target) as session:
    stop = threading.Event()
    session.run(spec["script"].encode(), "/bin/bash", show, stop=stop, terminal=spec["terminal"])
"""


@WITH_AND_WITHOUT_TERMINAL
def test_killed_client_leaves_no_remote_process(
    sshd: LocalSshd, token: str, terminal: bool
) -> None:
    spec = {
        "host": sshd.host,
        "port": sshd.port,
        "username": sshd.username,
        "key": sshd.client_keys.private_key,
        "host_key": [sshd.host_key.key_type, sshd.host_key.key_base64],
        "script": tree_script(token, ignore_term=False),
        "terminal": terminal,
    }
    client = subprocess.Popen(
        [sys.executable, "-c", KILLED_CLIENT, str(REPO)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert client.stdin is not None
        assert client.stdout is not None
        client.stdin.write(json.dumps(spec).encode() + b"\n")
        client.stdin.close()
        first_line = client.stdout.readline()
        assert first_line.startswith(b"started ")
        wait_until(lambda: len(pids_tagged(token)) >= 4, 5, "the four sleepers run")
    finally:
        client.kill()
        client.wait()
    wait_until_remote_is_clean(token, first_line, 5)


@WITH_AND_WITHOUT_TERMINAL
def test_connection_lost_mid_run_is_disconnected(
    session: ssh.Session, token: str, terminal: bool
) -> None:
    # The wrapper's parent is the sshd process serving this connection: kill it.
    script = "ps -o ppid= -p $PPID\n" + tree_script(token, ignore_term=False)
    stop = threading.Event()
    output = Output()
    results: list[ssh.RunResult] = []
    runner = threading.Thread(
        target=lambda: results.append(
            session.run(script.encode(), "/bin/bash", output, stop=stop, terminal=terminal)
        )
    )
    runner.start()
    output.wait_for(b"started")
    os.kill(int(output.stdout.split()[0]), signal.SIGKILL)
    runner.join(10)
    assert results == [ssh.RunResult("disconnected", None)]
    wait_until_remote_is_clean(token, output.stdout, 5)
