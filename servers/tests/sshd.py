"""A real OpenSSH server on 127.0.0.1 for the test suite, plus its pytest fixtures.

Loaded from the root conftest with ``pytest_plugins = ["servers.tests.sshd"]``. Each server
gets its own temporary directory (config, host keys, authorized_keys, log) and a free port.
As root the sessions log in as a dedicated user with an empty home, because root's .bashrc on
these machines adds ~110 ms to every command; as any other user they log in as that user.
"""

from __future__ import annotations

import getpass
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import EllipsisType

import pytest

from servers.ssh import Credentials, HostKey, Target
from servers.tests import netns

SSHD = Path("/usr/sbin/sshd")
TEST_USER = "tsubame-ssh"
TEST_HOME = Path("/var/lib/tsubame-ssh")
# sshd's defaults (MaxStartups 10:30:100, MaxSessions 10) drop parallel handshakes; the shared
# server raises them so unrelated tests never flake, `sshd_default` keeps them.
GENEROUS_LIMITS = {"MaxStartups": "256:30:512", "MaxSessions": "100"}
PASSPHRASE = "correct horse battery staple"

_KEYGEN_TYPES = {"ed25519": ["-t", "ed25519"], "rsa": ["-t", "rsa", "-b", "2048"]}


def _require_sshd() -> None:
    if not SSHD.exists():
        pytest.fail(
            f"{SSHD} is missing: install the Debian package openssh-server "
            "(`apt-get install -y openssh-server`, the Makefile does it)",
            pytrace=False,
        )


def _keygen(path: Path, key_type: str, passphrase: str = "") -> None:
    subprocess.run(
        ["ssh-keygen", "-q", *_KEYGEN_TYPES[key_type], "-N", passphrase, "-C", "", "-f", str(path)],
        check=True,
    )


def _login_user() -> str:
    if os.geteuid() != 0:
        return getpass.getuser()
    if not _user_exists():
        home, shell = ["--home-dir", str(TEST_HOME)], ["--shell", "/bin/bash"]
        added = subprocess.run(["useradd", "--no-create-home", *home, *shell, TEST_USER])
        if added.returncode != 0 and not _user_exists():  # another test process may have won
            raise RuntimeError(f"could not create the user {TEST_USER}")
        # useradd leaves the password locked ("!"), which sshd refuses even for key logins
        # when UsePAM is off; "*" means "no password" without locking the account.
        subprocess.run(["usermod", "-p", "*", TEST_USER], check=True)
    TEST_HOME.mkdir(parents=True, exist_ok=True)
    bashrc = TEST_HOME / ".bashrc"
    if not bashrc.exists():
        bashrc.write_text("")
    shutil.chown(TEST_HOME, TEST_USER, TEST_USER)
    shutil.chown(bashrc, TEST_USER, TEST_USER)
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # privilege-separation directory
    return TEST_USER


def _user_exists() -> bool:
    return subprocess.run(["id", TEST_USER], capture_output=True).returncode == 0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up after {timeout} s waiting for {what}")
        time.sleep(0.02)


@dataclass(frozen=True)
class ClientKeys:
    """Private keys the servers accept: one plain, one protected by PASSPHRASE."""

    directory: Path

    @classmethod
    def generate(cls, directory: Path) -> ClientKeys:
        _keygen(directory / "id_ed25519", "ed25519")
        _keygen(directory / "id_ed25519_encrypted", "ed25519", PASSPHRASE)
        return cls(directory)

    @property
    def private_key(self) -> str:
        return (self.directory / "id_ed25519").read_text()

    @property
    def encrypted_private_key(self) -> str:
        return (self.directory / "id_ed25519_encrypted").read_text()

    @property
    def passphrase(self) -> str:
        return PASSPHRASE

    @property
    def authorized_keys(self) -> str:
        names = ("id_ed25519.pub", "id_ed25519_encrypted.pub")
        return "".join((self.directory / name).read_text() for name in names)


class LocalSshd:
    """One `sshd -D` process; use as a context manager or call start()/stop()."""

    host = "127.0.0.1"

    def __init__(
        self,
        client_keys: ClientKeys,
        *,
        host_key_types: tuple[str, ...] = ("ed25519",),
        limits: dict[str, str] | None = None,
        extra_config: dict[str, str] | None = None,
    ) -> None:
        _require_sshd()
        self.client_keys = client_keys
        self.username = _login_user()
        # Not under pytest's tmp_path: that is mode 0700 and sshd reads authorized_keys as the
        # login user, who must be able to traverse the directory.
        self.directory = Path(tempfile.mkdtemp(prefix="tsubame-sshd-"))
        self.directory.chmod(0o755)
        self.log_path = self.directory / "sshd.log"
        self.host_keys: dict[str, HostKey] = {}
        for key_type in host_key_types:
            path = self.directory / f"host_{key_type}"
            _keygen(path, key_type)
            key_type_name, key_base64 = path.with_suffix(".pub").read_text().split()[:2]
            self.host_keys[key_type_name] = HostKey(key_type_name, key_base64)
        self._host_key_files = [self.directory / f"host_{t}" for t in host_key_types]
        authorized = self.directory / "authorized_keys"
        authorized.write_text(client_keys.authorized_keys)
        authorized.chmod(0o644)
        self._settings = dict(limits or {}) | dict(extra_config or {})
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def host_key(self) -> HostKey:
        """The first configured host key (ed25519 unless told otherwise)."""
        return next(iter(self.host_keys.values()))

    def host_key_file(self, key_type: str) -> Path:
        return self.directory / f"host_{key_type}.pub"

    def _config(self) -> str:
        lines = [
            f"Port {self.port}",
            f"ListenAddress {self.host}",
            *(f"HostKey {path}" for path in self._host_key_files),
            f"PidFile {self.directory / 'sshd.pid'}",
            f"AuthorizedKeysFile {self.directory / 'authorized_keys'}",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "PubkeyAuthentication yes",
            "PermitRootLogin prohibit-password",
            "UsePAM no",
            "StrictModes no",
            "LogLevel VERBOSE",
        ]
        overridden = {line.split()[0] for line in lines} & self._settings.keys()
        lines = [line for line in lines if line.split()[0] not in overridden]
        lines += [f"{name} {value}" for name, value in self._settings.items()]
        return "\n".join(lines) + "\n"

    def start(self) -> LocalSshd:
        # The free port can be taken between probing and binding; a few tries hide that race.
        for _attempt in range(3):
            self.port = self._choose_port()
            config = self.directory / "sshd_config"
            config.write_text(self._config())
            subprocess.run([str(SSHD), "-t", "-f", str(config)], check=True)
            log = self.log_path.open("ab")
            self._process = subprocess.Popen(
                [*self._launcher(), str(SSHD), "-D", "-e", "-f", str(config)],
                stdout=log,
                stderr=log,
                stdin=subprocess.DEVNULL,
            )
            log.close()
            try:
                _wait_for(self._accepts_or_died, 10, f"sshd on port {self.port}")
            except TimeoutError as exc:
                self.stop()
                raise RuntimeError(f"sshd never accepted; log:\n{self.log_text()}") from exc
            if self._process.poll() is None:
                return self
        raise RuntimeError(f"sshd did not start; log:\n{self.log_text()}")

    def _choose_port(self) -> int:
        return _free_port()

    def _launcher(self) -> list[str]:
        """What sshd's command line is prefixed with."""
        return []

    def _accepts_or_died(self) -> bool:
        assert self._process is not None
        if self._process.poll() is not None:
            return True
        try:
            socket.create_connection((self.host, self.port), timeout=0.5).close()
        except OSError:
            return False
        return True

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> LocalSshd:
        try:
            return self.start()
        except BaseException:
            self.cleanup()
            raise

    def __exit__(self, *exc_info: object) -> None:
        self.cleanup()

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_for_log(self, pattern: str, timeout: float = 5.0) -> re.Match[str]:
        """The first match of a regular expression in the log, waiting for it to appear."""
        found: list[re.Match[str]] = []

        def appeared() -> bool:
            match = re.search(pattern, self.log_text())
            if match:
                found.append(match)
            return match is not None

        _wait_for(appeared, timeout, f"{pattern!r} in the sshd log")
        return found[0]

    def credentials(self, *, encrypted: bool = False) -> Credentials:
        if encrypted:
            return Credentials(
                private_key=self.client_keys.encrypted_private_key,
                passphrase=self.client_keys.passphrase,
            )
        return Credentials(private_key=self.client_keys.private_key)

    def target(
        self,
        credentials: Credentials | None = None,
        *,
        host_key: HostKey | EllipsisType | None = ...,
        port: int | None = None,
        connect_timeout: float = 10.0,
    ) -> Target:
        """A Target for this server; pins its first host key unless host_key says otherwise."""
        return Target(
            host=self.host,
            port=self.port if port is None else port,
            username=self.username,
            credentials=credentials or self.credentials(),
            host_key=self.host_key if isinstance(host_key, EllipsisType) else host_key,
            connect_timeout=connect_timeout,
        )


class NamespacedSshd(LocalSshd):
    """An sshd alone in a network namespace, so that a test can cut the network to it."""

    def __init__(
        self, client_keys: ClientKeys, namespace: netns.NetworkNamespace, **options: object
    ) -> None:
        super().__init__(client_keys, **options)  # type: ignore[arg-type]
        self.namespace = namespace
        self.host = namespace.address

    def _choose_port(self) -> int:
        return 22  # nothing else listens in a new namespace

    def _launcher(self) -> list[str]:
        return self.namespace.exec_prefix()

    def partition(self) -> None:
        """From now on every packet between this server and its clients is dropped."""
        self.namespace.partition(self.port)


class PromptSshd(LocalSshd):
    """An sshd that reads its sessions' output as soon as it is written.

    When sshd runs late it reads everything waiting in a command's stdout pipe, then in its
    stderr pipe: on a busy machine (tests run side by side) two stdout lines 1 ms apart and
    the stderr line between them leave sshd already out of order. Real-time priority, where
    the machine allows it, takes that delay away, so that what a test sees is what the client
    did with the order it received.
    """

    def _launcher(self) -> list[str]:
        boost = ["chrt", "--fifo", "10"]
        allowed = shutil.which("chrt") and subprocess.run([*boost, "true"]).returncode == 0
        return boost if allowed else []


@pytest.fixture(scope="session")
def ssh_client_keys(tmp_path_factory: pytest.TempPathFactory) -> ClientKeys:
    _require_sshd()
    return ClientKeys.generate(tmp_path_factory.mktemp("ssh-client-keys"))


@pytest.fixture(scope="session")
def sshd(ssh_client_keys: ClientKeys) -> Iterator[LocalSshd]:
    """A shared server with limits high enough for any parallel test."""
    with LocalSshd(ssh_client_keys, limits=GENEROUS_LIMITS) as server:
        yield server


@pytest.fixture(scope="session")
def sshd_default(ssh_client_keys: ClientKeys) -> Iterator[LocalSshd]:
    """A shared server with sshd's default MaxStartups and MaxSessions."""
    with LocalSshd(ssh_client_keys) as server:
        yield server


@pytest.fixture(scope="session")
def prompt_sshd(ssh_client_keys: ClientKeys) -> Iterator[LocalSshd]:
    """A shared server for tests of output order; see PromptSshd."""
    with PromptSshd(ssh_client_keys, limits=GENEROUS_LIMITS) as server:
        yield server


@pytest.fixture
def make_sshd(ssh_client_keys: ClientKeys) -> Iterator[Callable[..., LocalSshd]]:
    """Start fresh servers (new host keys, empty log) that are stopped after the test.

    Takes LocalSshd's keyword arguments, e.g. ``make_sshd(host_key_types=("rsa", "ed25519"))``.
    """
    servers: list[LocalSshd] = []

    def make(**options: object) -> LocalSshd:
        options.setdefault("limits", GENEROUS_LIMITS)
        server = LocalSshd(ssh_client_keys, **options)  # type: ignore[arg-type]
        servers.append(server)  # cleaned up even if start() fails
        return server.start()

    yield make
    for server in servers:
        server.cleanup()


@pytest.fixture
def partitionable_sshd(ssh_client_keys: ClientKeys) -> Iterator[NamespacedSshd]:
    """A fresh sshd in its own network namespace, deleted afterwards with all it runs."""
    reason = netns.missing_requirement()
    if reason is not None:
        pytest.skip(reason)
    with (
        netns.NetworkNamespace.open() as namespace,
        NamespacedSshd(ssh_client_keys, namespace, limits=GENEROUS_LIMITS) as server,
    ):
        yield server
