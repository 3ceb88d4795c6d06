"""What the benchmarks share: Django on a throw-away data directory, waiting for a result, and
the OpenSSH client whose figures are the reference.

Importing this module sets Django up on WORK/data (SQLite unless DATABASE_URL/REDIS_URL are
set), so a benchmark imports it before any of the app's modules.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))
WORK = Path(tempfile.mkdtemp(prefix="tsubame-bench-"))
os.environ.setdefault("TSUBAME_DATA_DIR", str(WORK / "data"))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tsubame.settings")
os.environ.setdefault("LOG_LEVEL", "WARNING")

import django  # noqa: E402

django.setup()

from accounts.models import Team  # noqa: E402
from servers.models import Server  # noqa: E402
from servers.tests.sshd import ClientKeys, LocalSshd  # noqa: E402


def trusted_server(team: Team, sshd: LocalSshd, keys: ClientKeys, name: str = "bench") -> Server:
    """A server of `team` on the benchmark's sshd, logging in with `keys`, its key trusted."""
    server = Server.objects.create(
        team=team,
        name=name,
        host=sshd.host,
        port=sshd.port,
        username=sshd.username,
        private_key=keys.private_key,
    )
    server.trust_host_key(sshd.host_key, None)
    return server


def wait_for(condition: Callable[[], object], timeout: float = 600, every: float = 0.002) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("benchmark step did not finish")
        time.sleep(every)


class OpenSsh:
    """The OpenSSH client logging in to the benchmark's sshd with the benchmark's key."""

    def __init__(self, sshd: LocalSshd, keys: ClientKeys) -> None:
        self.sshd = sshd
        self.key_file = keys.directory / "id_ed25519"
        self.known_hosts = WORK / "known_hosts"
        self.known_hosts.write_text(
            f"[{sshd.host}]:{sshd.port} {sshd.host_key.key_type} {sshd.host_key.key_base64}\n"
        )

    def argv(self, command: str) -> list[str]:
        return [
            "ssh", "-i", str(self.key_file), "-p", str(self.sshd.port),
            "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
            "-o", f"UserKnownHostsFile={self.known_hosts}", "-o", "ControlMaster=no",
            f"{self.sshd.username}@{self.sshd.host}", command,
        ]  # fmt: skip

    def seconds(self, command: str, *, first_byte: bool = False) -> float:
        """Seconds until `command`'s output was read to the end (or its first byte)."""
        began = time.perf_counter()
        with subprocess.Popen(
            self.argv(command), stdout=subprocess.PIPE, stdin=subprocess.DEVNULL
        ) as proc:
            assert proc.stdout is not None
            if first_byte:
                proc.stdout.read(1)
                elapsed = time.perf_counter() - began
                proc.stdout.read()
            else:
                while proc.stdout.read(1 << 20):
                    pass
                elapsed = time.perf_counter() - began
        if proc.returncode:
            raise RuntimeError(f"ssh exited {proc.returncode}")
        return elapsed

    def seconds_in_parallel(self, command: str, count: int, parallel: int) -> float:
        """Seconds for `count` logins running `command`, `parallel` at a time: `seq COUNT |
        xargs -P PARALLEL -I {} ssh … COMMAND` (no {} in it: each line only starts one login)."""
        lines = "".join(f"{n}\n" for n in range(count)).encode()
        argv = ["xargs", "-P", str(parallel), "-I", "{}", *self.argv(command)]
        began = time.perf_counter()
        subprocess.run(argv, input=lines, stdout=subprocess.DEVNULL, check=True)
        return time.perf_counter() - began
