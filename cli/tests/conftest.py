"""The installed `tsubame` command against a real web server, worker and sshd (`live_app`)."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from accounts.models import ApiToken

# Where `make` installs it (`pip install ./cli`), next to the interpreter running the tests.
TSUBAME = Path(sys.executable).with_name("tsubame")


@dataclass
class Cli:
    """Runs the installed command as a user would, with TSUBAME_URL and TSUBAME_TOKEN set."""

    env: dict[str, str]
    token: str

    @staticmethod
    def command(*args: str) -> list[str]:
        return [str(TSUBAME), *args]

    def run(self, *args: str, timeout: float = 120, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.command(*args),
            env=self.env | env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def start(self, *args: str, **env: str) -> subprocess.Popen[bytes]:
        """The command in the background, its output on pipes."""
        return subprocess.Popen(
            self.command(*args),
            env=self.env | env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )


@pytest.fixture
def cli(live_app, superuser, tmp_path: Path) -> Cli:
    assert TSUBAME.exists(), f"{TSUBAME} is missing: `make test` installs it (pip install ./cli)"
    _token, secret = ApiToken.issue(superuser, "cli")
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),  # no config file of the machine's
        "TSUBAME_URL": live_app.url,
        "TSUBAME_TOKEN": secret,
    }
    return Cli(env, secret)


class CuttingProxy:
    """A TCP proxy to the web server that cuts its first `cuts` connections once each has
    carried `after` bytes to the client: a network drop in the middle of a message."""

    def __init__(self, port: int, cuts: int, after: int) -> None:
        self.port, self.cuts_left, self.after = port, cuts, after
        self.cut = 0
        self.lock = threading.Lock()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # closed
            upstream = socket.create_connection(("127.0.0.1", self.port))
            threading.Thread(target=self.pump, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self.pump, args=(upstream, client, True), daemon=True).start()

    def pump(self, source: socket.socket, sink: socket.socket, to_client: bool) -> None:
        carried = 0
        try:
            while data := source.recv(65536):
                sink.sendall(data)
                carried += len(data)
                if to_client and carried >= self.after and self.take_cut():
                    break
        except OSError:
            pass
        for end in (source, sink):
            # shutdown, not only close: it also wakes the other direction's blocked recv.
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)
            end.close()

    def take_cut(self) -> bool:
        with self.lock:
            if self.cuts_left == 0:
                return False
            self.cuts_left -= 1
            self.cut += 1
            return True

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def cutting_proxy(live_app) -> Iterator[Callable[[int, int], CuttingProxy]]:
    proxies: list[CuttingProxy] = []

    def make(cuts: int, after: int) -> CuttingProxy:
        proxy = CuttingProxy(int(live_app.url.rsplit(":", 1)[1]), cuts, after)
        proxies.append(proxy)
        return proxy

    yield make
    for proxy in proxies:
        proxy.close()
