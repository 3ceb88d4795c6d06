"""A network namespace joined to this host by a veth pair, for tests that cut the network.

The host end gets 10.254.N.1 and the namespace end 10.254.N.2 on a /24 no other interface
uses, so traffic between them stays on this machine. `partition(port)` drops a TCP port's
packets inside the namespace: both ends keep their sockets and hear nothing, as in a real
network partition (no reset, no FIN). Needs root, `ip` (iproute2) and `iptables`.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import subprocess
import uuid
from collections.abc import Iterator


def missing_requirement() -> str | None:
    """Why namespaces cannot be made here, or None when they can."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    for tool, package in (("ip", "iproute2"), ("iptables", "iptables")):
        if shutil.which(tool) is None:
            return f"`{tool}` is missing: install the Debian package {package}"
    return None


def _ip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=True)


class NetworkNamespace:
    """Create with `open()` (a context manager); everything is deleted on exit."""

    def __init__(self) -> None:
        suffix = uuid.uuid4().hex[:8]
        self.name = f"tsubame-{suffix}"
        self.host_link = f"tsb{suffix}h"  # interface names have at most 15 characters
        self.inner_link = f"tsb{suffix}n"
        self.host_address = ""
        self.address = ""

    @classmethod
    @contextlib.contextmanager
    def open(cls) -> Iterator[NetworkNamespace]:
        namespace = cls()
        try:
            namespace._create()
            yield namespace
        finally:
            namespace.delete()

    def exec_prefix(self) -> list[str]:
        """Prefix for a command that should run inside the namespace."""
        return ["ip", "netns", "exec", self.name]

    def partition(self, port: int) -> None:
        """Drop every packet to and from `port` inside the namespace, silently."""
        for chain, match in (("INPUT", "--dport"), ("OUTPUT", "--sport")):
            rule = [chain, "-p", "tcp", match, str(port), "-j", "DROP"]
            subprocess.run([*self.exec_prefix(), "iptables", "-A", *rule], check=True)

    def delete(self) -> None:
        """Kill what still runs inside, then remove the namespace and both veth ends."""
        listed = subprocess.run(["ip", "netns", "pids", self.name], capture_output=True, text=True)
        for pid in listed.stdout.split():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True)
        # Gone with the namespace unless something kept it alive; never leave the host end.
        subprocess.run(["ip", "link", "del", self.host_link], capture_output=True)

    def _create(self) -> None:
        _ip("netns", "add", self.name)
        subnet = self._unused_subnet()
        self.host_address, self.address = f"{subnet}.1", f"{subnet}.2"
        _ip("link", "add", self.host_link, "type", "veth", "peer", "name", self.inner_link)
        _ip("link", "set", self.inner_link, "netns", self.name)
        _ip("addr", "add", f"{self.host_address}/24", "dev", self.host_link)
        _ip("link", "set", self.host_link, "up")
        inside = ["-n", self.name]
        _ip(*inside, "addr", "add", f"{self.address}/24", "dev", self.inner_link)
        _ip(*inside, "link", "set", self.inner_link, "up")
        _ip(*inside, "link", "set", "lo", "up")

    @staticmethod
    def _unused_subnet() -> str:
        in_use = _ip("-4", "-o", "addr", "show").stdout + _ip("-4", "route", "show").stdout
        free = [n for n in range(1, 255) if f"10.254.{n}." not in in_use]
        return f"10.254.{random.choice(free)}"
