"""The SSH layer: connect with a pinned host key, run a script, stream its output, stop it.

Imports nothing from Django so it can be tested against a real sshd on its own.

Host keys are checked right after key exchange, before any credential is even parsed: an
unknown or changed key never sees a password or a signature.

Stopping a remote command: OpenSSH ignores "signal" requests without a pty, and closing the
channel does not kill a command that runs without one. What does hold (checked on OpenSSH
9.2) is that sshd runs each no-pty command as `$SHELL -c COMMAND` in a new session, so the
shell we exec is session and process-group leader and everything the script starts shares its
group. `run` sends `exec /bin/sh -c '<wrapper>'`, writes exactly len(script) bytes to stdin and
keeps stdin open. The wrapper copies those bytes into a private temp file, starts a watcher
that blocks reading the rest of stdin, and runs `interpreter tmpfile` with stdin at /dev/null.
Stdin reaches EOF when we cancel (`shutdown_write`), when the channel closes (even if our
caller raised), or when the TCP connection dies (our process was killed): the watcher then
sends TERM to its process group (`kill 0`), waits the grace period and sends KILL. On a normal
exit the wrapper kills the watcher first, so daemons the script started on purpose survive.
Processes that leave the group (setsid, a new session) escape this, as they would a Ctrl-C.

A connection lost while a command runs gives outcome "disconnected", not an exception: the
output so far was delivered and the caller records a result either way. Failing to start the
command at all raises ProtocolError.
"""

from __future__ import annotations

import base64
import hashlib
import io
import random
import re
import select
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import ClassVar, Literal

import paramiko
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from paramiko.common import MSG_CHANNEL_REQUEST

Stream = Literal["stdout", "stderr"]
Outcome = Literal["exited", "cancelled", "timed_out", "disconnected"]

# sshd's default MaxStartups 10:30:100 randomly drops handshakes past 10 in flight; 4 per host
# plus a few retries keeps a fan-out to one host (or one bastion) reliable.
MAX_HANDSHAKES_PER_HOST = 4
CONNECT_ATTEMPTS = 3
READ_SIZE = 64 * 1024
SEND_SIZE = 32 * 1024  # paramiko's maximum packet size; larger writes are split anyway
# A background process that keeps stdout open would otherwise hold the run open forever.
EXIT_DRAIN_SECONDS = 2.0
# After the remote's grace period expires the watcher sends KILL; allow for latency on top.
KILL_MARGIN_SECONDS = 3.0
POLL_SECONDS = 0.1
KEEPALIVE_SECONDS = 15
DEAD_PEER_SECONDS = 60

INTERPRETER_PATTERN = r"/[A-Za-z0-9_./+-]+"
_INTERPRETER = re.compile(INTERPRETER_PATTERN)
# Host key algorithms that prove possession of a key of the pinned type.
_HOST_KEY_ALGORITHMS = {"ssh-rsa": ("rsa-sha2-512", "rsa-sha2-256", "ssh-rsa")}
_FAST_CIPHERS = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com")
_KEY_CLASSES: tuple[tuple[type, type[paramiko.PKey]], ...] = (
    (ed25519.Ed25519PrivateKey, paramiko.Ed25519Key),
    (ec.EllipticCurvePrivateKey, paramiko.ECDSAKey),
    (rsa.RSAPrivateKey, paramiko.RSAKey),
)


@dataclass(frozen=True)
class HostKey:
    key_type: str
    key_base64: str

    @property
    def fingerprint(self) -> str:
        digest = hashlib.sha256(base64.b64decode(self.key_base64)).digest()
        return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")

    @classmethod
    def from_pkey(cls, key: paramiko.PKey) -> HostKey:
        return cls(key.get_name(), key.get_base64())


@dataclass(frozen=True)
class Credentials:
    # Kept out of repr so a traceback, a debug page or an error reporter never shows them.
    password: str | None = field(default=None, repr=False)
    private_key: str | None = field(default=None, repr=False)
    passphrase: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class Target:
    host: str
    port: int
    username: str
    credentials: Credentials
    host_key: HostKey | None
    connect_timeout: float = 10.0


class SSHError(Exception):
    kind: ClassVar[str] = "protocol"


class Unreachable(SSHError):
    kind = "unreachable"


class ConnectTimeout(SSHError):
    kind = "timeout"


class HostKeyUnknown(SSHError):
    kind = "host_key_unknown"

    def __init__(self, offered: HostKey) -> None:
        super().__init__(f"host key not trusted yet: server offers {offered.fingerprint}")
        self.offered = offered


class HostKeyChanged(SSHError):
    kind = "host_key_changed"

    def __init__(self, expected: HostKey, offered: HostKey) -> None:
        super().__init__(
            f"host key changed: expected {expected.fingerprint}, got {offered.fingerprint}"
        )
        self.expected = expected
        self.offered = offered


class AuthFailed(SSHError):
    kind = "auth_failed"


class CredentialError(SSHError):
    kind = "credential_error"


class ProtocolError(SSHError):
    kind = "protocol"


class _Dropped(Exception):
    """The server hung up during the handshake, as sshd does past MaxStartups: retryable."""


@dataclass(frozen=True)
class ConnectionCheck:
    status: str
    latency_ms: float | None
    message: str


@dataclass(frozen=True)
class RunResult:
    outcome: Outcome
    exit_code: int | None
    signal: str | None = None


_slots: dict[tuple[str, int], threading.BoundedSemaphore] = {}
_slots_lock = threading.Lock()


@contextmanager
def _handshake_slot(host: str, port: int) -> Iterator[None]:
    with _slots_lock:
        slot = _slots.setdefault((host, port), threading.BoundedSemaphore(MAX_HANDSHAKES_PER_HOST))
    with slot:
        yield


def fetch_host_key(host: str, port: int, timeout: float = 10.0) -> HostKey:
    """The key the server offers; nothing is authenticated."""
    transport = _establish(host, port, timeout, None)
    try:
        return HostKey.from_pkey(transport.get_remote_server_key())
    finally:
        transport.close()


def connect(target: Target) -> Session:
    return Session(_establish(target.host, target.port, target.connect_timeout, target), target)


def check_connection(target: Target) -> ConnectionCheck:
    """Connect, authenticate and run `true` the way scripts run; latency covers all of it."""
    started = time.monotonic()
    try:
        with connect(target) as session:
            result = session.run(
                b"true", "/bin/sh", _discard, stop=threading.Event(), timeout=target.connect_timeout
            )
    except SSHError as exc:
        return ConnectionCheck(exc.kind, None, str(exc))
    latency_ms = round((time.monotonic() - started) * 1000, 1)
    if result.outcome == "timed_out":
        return ConnectionCheck(ConnectTimeout.kind, None, "`true` did not finish in time")
    if result.exit_code != 0:
        return ConnectionCheck(ProtocolError.kind, latency_ms, f"`true` ended with {result}")
    return ConnectionCheck("ok", latency_ms, f"logged in as {target.username} and ran `true`")


def _discard(stream: Stream, data: bytes) -> None:
    pass


class Session:
    """An authenticated connection; each `run` gets its own channel, so runs may overlap."""

    def __init__(self, transport: paramiko.Transport, target: Target) -> None:
        self._transport = transport
        self._target = target
        self._signals: dict[int, str] = {}
        _capture_exit_signals(transport, self._signals)

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._transport.close()

    def run(
        self,
        script: bytes,
        interpreter: str,
        on_output: Callable[[Stream, bytes], None],
        *,
        stop: threading.Event,
        timeout: float | None = None,
        kill_grace: float = 2.0,
    ) -> RunResult:
        """Run `script` with `interpreter`, passing output to `on_output` as it arrives.

        `on_output` may block: that only slows the remote down. Each stream's bytes arrive in
        order; how stdout and stderr interleave is not preserved (the channel buffers them
        apart). Raises ProtocolError if the command cannot be started.
        """
        command = _wrapper_command(len(script), interpreter, kill_grace)
        if stop.is_set():
            return RunResult("cancelled", None)
        channel = self._open(command)
        try:
            outcome = _supervise(channel, memoryview(script), on_output, stop, timeout, kill_grace)
            signal = self._signals.get(channel.get_id())
            reported = channel.exit_status >= 0 or signal is not None
            if outcome == "exited" and not reported:
                outcome = "disconnected"
            exit_code = channel.exit_status if channel.exit_status >= 0 else None
            return RunResult(outcome, exit_code, signal)
        finally:
            # Closing sends EOF too, so even if on_output raised the watcher stops the script.
            channel.close()
            self._signals.pop(channel.get_id(), None)

    def _open(self, command: str) -> paramiko.Channel:
        try:
            channel = self._transport.open_session(timeout=self._target.connect_timeout)
        except (paramiko.SSHException, EOFError, OSError) as exc:
            raise ProtocolError(f"cannot open a session on {self._target.host}: {exc}") from exc
        try:
            channel.exec_command(command)
        except (paramiko.SSHException, EOFError, OSError) as exc:
            channel.close()
            raise ProtocolError(f"cannot start a command on {self._target.host}: {exc}") from exc
        return channel


def _wrapper_command(size: int, interpreter: str, grace: float) -> str:
    """The remote command; see the module docstring for why it is shaped like this."""
    if not _INTERPRETER.fullmatch(interpreter):
        raise ValueError(f"interpreter must be an absolute path, got {interpreter!r}")
    grace = min(max(grace, 0.0), 3600.0)
    grace_text = str(int(grace)) if grace == int(grace) else f"{grace:.3f}"
    # One line, no single quote, no backslash: bash, zsh, fish and csh all pass it unchanged.
    steps = [
        "umask 077",
        "f=$(mktemp) || exit 125",
        'clean() { rm -f "$f"; }',
        f'head -c {size} >"$f"',
        # Fewer bytes means we hung up while sending: never run a truncated script.
        f'[ $(wc -c <"$f") -eq {size} ] || {{ clean; exit 125; }}',
        "exec 3<&0",
        # The watcher. `kill -0 $$`: if the wrapper already finished, this EOF is just the
        # channel closing after a normal exit and the script's daemons must live.
        '{ while read -r _; do :; done <&3; kill -0 $$ || exit; trap "" TERM; kill -TERM 0; '
        f"sleep {grace_text}; clean; kill -KILL 0; }} >/dev/null 2>&1 & w=$!",
        # Only now: dash drops a TERM that reaches a new subshell still carrying the parent's
        # trap, which made `kill $w` fail often under load. PIPE because sh dies writing
        # "Terminated" to a stderr whose channel is gone.
        'trap "clean; exit 143" TERM HUP PIPE',
        f'{interpreter} "$f" </dev/null 3<&-',
        "rc=$?",
        "kill $w 2>/dev/null",
        "clean",
        "exit $rc",
    ]
    return "exec /bin/sh -c '" + "; ".join(steps) + "'"


def _supervise(
    channel: paramiko.Channel,
    script: memoryview,
    on_output: Callable[[Stream, bytes], None],
    stop: threading.Event,
    timeout: float | None,
    kill_grace: float,
) -> Outcome:
    """Feed the script, pump output, and stop the remote on cancel or timeout."""
    deadline = None if timeout is None else time.monotonic() + timeout
    outcome: Outcome = "exited"
    sent = 0
    give_up_at: float | None = None  # set once we asked the remote to stop
    drain_until: float | None = None  # set once the exit status arrived
    channel.settimeout(POLL_SECONDS)  # bounds send() while the remote's window is full
    wakeup = channel.fileno()  # readable when either stream has data
    while True:
        # Read before draining: data always arrives before EOF, so a channel that had ended
        # when this pass began has nothing left once both buffers come up empty.
        ended = channel.eof_received or channel.closed
        busy = False
        if channel.recv_ready():
            on_output("stdout", channel.recv(READ_SIZE))
            busy = True
        if channel.recv_stderr_ready():
            on_output("stderr", channel.recv_stderr(READ_SIZE))
            busy = True
        now = time.monotonic()
        if channel.exit_status >= 0 or channel.status_event.is_set():
            drain_until = drain_until or now + EXIT_DRAIN_SECONDS
            if (not busy and ended) or now >= drain_until:
                return outcome
        if give_up_at is None:
            if stop.is_set():
                outcome = "cancelled"
            elif deadline is not None and now >= deadline:
                outcome = "timed_out"
            if outcome != "exited":
                if not channel.closed:
                    channel.shutdown_write()  # stdin EOF: the remote watcher kills the group
                give_up_at = now + kill_grace + KILL_MARGIN_SECONDS
        elif now >= give_up_at:
            return outcome
        if give_up_at is None and sent < len(script):
            try:
                sent += channel.send(bytes(script[sent : sent + SEND_SIZE]))
            except TimeoutError:
                pass
            except OSError:
                sent = len(script)  # the channel is gone; the checks above will notice
            continue
        if busy:
            continue
        if channel.eof_received or channel.closed:
            # The wakeup pipe stays readable after EOF; wait for the status instead.
            channel.status_event.wait(POLL_SECONDS)
        else:
            select.select([wakeup], [], [], POLL_SECONDS)


def _capture_exit_signals(transport: paramiko.Transport, signals: dict[int, str]) -> None:
    """Record "exit-signal" requests, which paramiko drops, by channel id.

    Without this a command killed by a signal looks like one that never reported anything.
    """
    table = dict(transport._channel_handler_table)
    handle_request = table[MSG_CHANNEL_REQUEST]

    def handle(channel: paramiko.Channel, message: paramiko.Message) -> None:
        start = message.packet.tell()
        if message.get_text() == "exit-signal":
            message.get_boolean()
            signals[channel.get_id()] = message.get_text()
            channel.status_event.set()
        message.packet.seek(start)
        handle_request(channel, message)

    transport._channel_handler_table = table | {MSG_CHANNEL_REQUEST: handle}


def _establish(host: str, port: int, timeout: float, target: Target | None) -> paramiko.Transport:
    """A negotiated transport; verified and authenticated when a target is given."""
    for attempt in range(1, CONNECT_ATTEMPTS + 1):
        try:
            with _handshake_slot(host, port):
                transport = _negotiate(host, port, timeout, target and target.host_key)
                try:
                    if target is not None:
                        _verify_host_key(transport, target.host_key)
                        _authenticate(transport, target)
                except BaseException:
                    transport.close()
                    raise
                return transport
        except _Dropped as exc:
            if attempt == CONNECT_ATTEMPTS:
                raise ProtocolError(
                    f"{host}:{port} closed the connection during the SSH handshake "
                    f"{attempt} times in a row ({exc}); is it overloaded (MaxStartups)?"
                ) from exc
        time.sleep(random.uniform(0.05, 0.3))
    raise AssertionError("unreachable")


def _negotiate(host: str, port: int, timeout: float, pinned: HostKey | None) -> paramiko.Transport:
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except TimeoutError as exc:
        raise ConnectTimeout(f"connecting to {host}:{port} timed out after {timeout:g} s") from exc
    except socket.gaierror as exc:
        raise Unreachable(f"cannot resolve {host}: {exc.strerror}") from exc
    except OSError as exc:
        raise Unreachable(f"cannot reach {host}:{port}: {exc.strerror or exc}") from exc
    # Without it every small packet waits on delayed ACKs: 47 ms vs 2.5 ms per command.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    _detect_dead_peer(sock)
    transport = paramiko.Transport(sock)
    transport.set_keepalive(KEEPALIVE_SECONDS)
    transport.banner_timeout = transport.handshake_timeout = transport.auth_timeout = timeout
    options = transport.get_security_options()
    # AES-GCM needs no separate MAC: ~1.7x the throughput of paramiko's default aes128-ctr.
    fast = [c for c in _FAST_CIPHERS if c in options.ciphers]
    options.ciphers = fast + [c for c in options.ciphers if c not in fast]
    if pinned is not None:
        # Servers usually hold several host keys and the client's preference picks one: put the
        # pinned type first or a server with rsa+ed25519 would look changed.
        wanted = _HOST_KEY_ALGORITHMS.get(pinned.key_type, (pinned.key_type,))
        first = [a for a in wanted if a in options.key_types]
        options.key_types = first + [a for a in options.key_types if a not in first]
    done = threading.Event()
    transport.start_client(event=done)
    if not done.wait(timeout + 1):  # paramiko's own timeouts fire first; this is a backstop
        transport.close()
        raise ConnectTimeout(f"SSH negotiation with {host}:{port} timed out after {timeout:g} s")
    if transport.is_active():
        return transport
    exc = transport.get_exception()
    transport.close()
    cause = exc.__context__ if exc is not None else None
    if isinstance(exc, TimeoutError) or isinstance(cause, TimeoutError):
        raise ConnectTimeout(f"{host}:{port} sent no SSH banner within {timeout:g} s") from exc
    if transport.packetizer.handshake_timed_out():  # paramiko reports it as EOF
        raise ConnectTimeout(f"SSH negotiation with {host}:{port} took over {timeout:g} s")
    if isinstance(exc, EOFError | ConnectionError) or isinstance(cause, EOFError | ConnectionError):
        raise _Dropped(str(exc) or type(exc).__name__) from exc
    raise ProtocolError(f"SSH negotiation with {host}:{port} failed: {exc}") from exc


def _detect_dead_peer(sock: socket.socket) -> None:
    """Make the kernel give up on a peer that vanished without a reset (host down, network
    partition, dropped NAT entry), so a silent run ends "disconnected" instead of hanging.

    TCP keepalive probes an idle connection; the SSH keepalive above puts data in flight
    regularly, and TCP_USER_TIMEOUT fails the socket when that data stays unacknowledged.
    """
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for option, value in (
        ("TCP_KEEPIDLE", KEEPALIVE_SECONDS),
        ("TCP_KEEPINTVL", KEEPALIVE_SECONDS),
        ("TCP_KEEPCNT", 3),
        ("TCP_USER_TIMEOUT", DEAD_PEER_SECONDS * 1000),
    ):
        if hasattr(socket, option):  # Linux; other systems keep their defaults
            sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, option), value)


def _verify_host_key(transport: paramiko.Transport, pinned: HostKey | None) -> None:
    offered = HostKey.from_pkey(transport.get_remote_server_key())
    if pinned is None:
        raise HostKeyUnknown(offered)
    if offered != pinned:
        raise HostKeyChanged(pinned, offered)


def _authenticate(transport: paramiko.Transport, target: Target) -> None:
    credentials, user = target.credentials, target.username
    key = load_private_key(credentials) if credentials.private_key else None
    if key is None and credentials.password is None:
        raise CredentialError("no password or private key given")
    attempts: list[tuple[str, Callable[[], object]]] = []
    if key is not None:
        attempts.append(("private key", lambda: transport.auth_publickey(user, key)))
    if credentials.password is not None:
        password = credentials.password
        attempts.append(("password", lambda: transport.auth_password(user, password)))
    failures = []
    for method, attempt in attempts:
        try:
            attempt()
            return
        except paramiko.BadAuthenticationType as exc:
            failures.append(f"{method} not accepted (server allows {', '.join(exc.allowed_types)})")
        except paramiko.AuthenticationException as exc:
            # paramiko reports a connection closed mid-auth as a failed authentication.
            if not transport.is_active():
                raise _Dropped("connection closed during authentication") from exc
            if "timeout" in str(exc).lower():
                timeout = target.connect_timeout
                raise ConnectTimeout(f"authentication timed out after {timeout:g} s") from exc
            failures.append(f"{method} rejected")
        except (paramiko.SSHException, EOFError, OSError) as exc:
            raise ProtocolError(f"authentication as {user} failed: {exc}") from exc
    raise AuthFailed(f"authentication as {user} failed: {'; '.join(failures)}")


def load_private_key(credentials: Credentials) -> paramiko.PKey:
    """Parse a private key in any common format; CredentialError says what is wrong with it."""
    text = (credentials.private_key or "").strip() + "\n"
    passphrase = credentials.passphrase.encode() if credentials.passphrase else None
    load = (
        serialization.load_ssh_private_key
        if "BEGIN OPENSSH PRIVATE KEY" in text
        else serialization.load_pem_private_key
    )
    try:
        try:
            loaded = load(text.encode(), passphrase)
        except TypeError as exc:
            if passphrase is None:
                raise CredentialError(
                    "the private key is encrypted: a passphrase is needed"
                ) from exc
            # A passphrase stored alongside an unencrypted key is harmless: ignore it.
            loaded = load(text.encode(), None)
    except ValueError as exc:
        if passphrase is not None and ("password" in str(exc) or "checksum" in str(exc)):
            raise CredentialError("wrong passphrase for the private key") from exc
        raise CredentialError(f"cannot parse the private key: {exc}") from exc
    except (TypeError, UnsupportedAlgorithm) as exc:
        raise CredentialError(f"cannot parse the private key: {exc}") from exc
    # cryptography reads every format (OpenSSH, PKCS#1, PKCS#8, encrypted or not); paramiko's
    # key classes all read unencrypted OpenSSH format, so hand them that.
    for crypto_class, key_class in _KEY_CLASSES:
        if isinstance(loaded, crypto_class):
            openssh = loaded.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.OpenSSH,
                serialization.NoEncryption(),
            )
            try:
                return key_class.from_private_key(io.StringIO(openssh.decode()))
            except paramiko.SSHException as exc:
                raise CredentialError(f"unsupported private key: {exc}") from exc
    raise CredentialError(f"unsupported private key type: {type(loaded).__name__}")
