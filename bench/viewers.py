#!/usr/bin/env python
"""Benchmark of many live viewers of one running execution on one web server process.

    .venv/bin/python bench/viewers.py        (or: make bench)

Starts its own sshd on 127.0.0.1, a throw-away data directory (SQLite unless DATABASE_URL/
REDIS_URL are set), a `manage.py worker` and one web server process (tsubame.webserver, with
a counter of the database queries it runs), then for 1, 50 and 200 WebSocket viewers of one
execution that prints a line every 100 ms prints:
  - the latency of each line from when the server printed it to its arrival at each viewer
    (p50, p95 over every line and viewer; the sshd is local, so the clocks are one),
  - the web server's database queries per second while the lines flowed: all of them (with
    the access re-checks, one per viewer every LIVE_ACCESS_RECHECK_SECONDS), and those that
    read output (LogChunk); and its share of one CPU meanwhile,
  - errors in the web server's log.
Targets (issue 12): p95 <= 250 ms with Redis, <= 400 ms polling, at 200 viewers; queries per
second independent of the number of viewers. Machines here are shared and noisy.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import shutil
import socket
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common import WORK, trusted_server, wait_for  # sets Django up: before the app's modules
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.signals import connection_created
from django.test import Client

from accounts.models import Team
from executions import services
from executions.models import LogChunk, Trigger
from jobs.models import Job
from servers.tests.sshd import GENEROUS_LIMITS, ClientKeys, LocalSshd
from tsubame.tests.processes import app_environment, free_port, spawn, stop
from tsubame.webserver import main as webserver

VIEWERS = [int(n) for n in os.getenv("BENCH_VIEWERS", "1,50,200").split(",")]
LINES = int(os.getenv("BENCH_LINES", "80"))  # one every 100 ms
# Each line carries the time it was printed. It waits for the gate file, so that every viewer
# is connected and has replayed before the first line.
SCRIPT = (
    'while [ ! -e "{gate}" ]; do sleep 0.02; done; '
    f"for i in $(seq 1 {LINES}); do echo tick $i $(date +%s.%N); sleep 0.1; done"
)
CONNECTING = 20
TICK = re.compile(r"tick (\d+) (\d+\.\d+)\n")
NAME = WORK.name  # unique per run: with DATABASE_URL set, the database may hold older rows


class Viewer:
    """One WebSocket on the live output, over a plain socket (RFC 6455), noting when each
    printed line arrives."""

    def __init__(self, port: int, path: str, cookie: str) -> None:
        self.port, self.path, self.cookie = port, path, cookie
        self.latencies: list[float] = []
        self.seen: set[int] = set()
        self.ended = False
        self.connected = asyncio.Event()

    async def run(self) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port, limit=1 << 22)
        origin = f"http://127.0.0.1:{self.port}"
        request = [
            f"GET {self.path} HTTP/1.1",
            f"Host: 127.0.0.1:{self.port}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}",
            "Sec-WebSocket-Version: 13",
            f"Origin: {origin}",
            f"Cookie: {self.cookie}",
        ]
        writer.write(("\r\n".join(request) + "\r\n\r\n").encode())
        status = (await reader.readline()).decode()
        if " 101 " not in status:
            raise RuntimeError(f"handshake refused: {status!r}")
        while await reader.readline() not in (b"\r\n", b""):
            pass
        try:
            while True:
                first, second = await reader.readexactly(2)
                length = second & 0x7F
                if length >= 126:
                    length = int.from_bytes(await reader.readexactly(2 if length == 126 else 8))
                payload = await reader.readexactly(length)
                arrived, opcode = time.time(), first & 0x0F
                if opcode == 0x8:
                    raise RuntimeError(f"closed by the server: {payload[:2].hex()}")
                if opcode == 0x9:  # daphne's keep-alive ping: a client's frames are masked
                    writer.write(bytes([0x8A, 0x80 | len(payload)]) + bytes(4) + payload)
                    continue
                message = json.loads(payload)
                if message["type"] == "status":
                    self.connected.set()
                elif message["type"] == "output":
                    for chunk in message["chunks"]:
                        for number, printed in TICK.findall(chunk["text"]):
                            self.seen.add(int(number))
                            self.latencies.append(arrived - float(printed))
                elif message["type"] == "end":
                    self.ended = True
                    return
        finally:
            writer.close()


def serve_counting_queries(count_file: Path, argv: list[str]) -> None:
    """The web server under test (daphne as in production), writing to `count_file` as it goes
    how many queries its database connections have run: all, and those reading output."""
    counts = [0, 0]

    def counted(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        counts[0] += 1
        counts[1] += LogChunk._meta.db_table in sql
        return execute(sql, params, many, context)

    def count_on(connection: BaseDatabaseWrapper, **kwargs: Any) -> None:
        if counted not in connection.execute_wrappers:
            connection.execute_wrappers.append(counted)

    def report() -> None:
        written = count_file.with_suffix(".new")
        while True:
            written.write_text(json.dumps(counts))
            written.replace(count_file)  # whole: the benchmark never reads a half-written file
            time.sleep(0.05)

    connection_created.connect(count_on, weak=False)
    threading.Thread(target=report, daemon=True).start()
    webserver(argv)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


@dataclass
class WebServer:
    port: int
    pid: int
    count_file: Path  # how many queries it has run, as it writes it

    def queries(self) -> tuple[int, int]:
        """Queries run so far: all, and those reading output."""
        every, output = json.loads(self.count_file.read_text())
        return every, output

    def cpu_seconds(self) -> float:
        """The user and system CPU time it has used."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def watch(web: WebServer, cookie: str, execution_id: int, gate: Path, viewers: int) -> str:
    path = f"/ws/executions/{execution_id}/"
    clients = [Viewer(web.port, path, cookie) for _ in range(viewers)]
    tasks: list[asyncio.Task[None]] = []
    async with asyncio.timeout(300):
        # CONNECTING at a time, as a crowd opens a page: the measure is following, not a storm
        # of handshakes (more than the listen backlog at once).
        for first in range(0, viewers, CONNECTING):
            batch = [asyncio.create_task(c.run()) for c in clients[first : first + CONNECTING]]
            tasks += batch
            for client, task in zip(clients[first:], batch, strict=False):
                connected = asyncio.create_task(client.connected.wait())
                await asyncio.wait({connected, task}, return_when=asyncio.FIRST_COMPLETED)
                if task.done():
                    task.result()
    began, queries, cpu = time.monotonic(), web.queries(), web.cpu_seconds()
    gate.touch()
    async with asyncio.timeout(LINES * 0.1 + 120):
        await asyncio.gather(*tasks)
    seconds = time.monotonic() - began
    (every, output), cpu = web.queries(), web.cpu_seconds() - cpu
    every, output = every - queries[0], output - queries[1]
    latencies = [latency for client in clients for latency in client.latencies]
    missing = sum(LINES - len(client.seen) for client in clients)
    p50, p95 = percentile(latencies, 0.5) * 1000, percentile(latencies, 0.95) * 1000
    extra = f"  ({missing} lines missing!)" if missing else ""
    rates = f"{every / seconds:>10.0f} {output / seconds:>10.0f}"
    figures = f"{p50:>8.0f} {p95:>8.0f} {rates} {cpu / seconds:>10.0%}"
    return f"{viewers:>8} {figures}{extra}"


def main() -> None:
    call_command("migrate", verbosity=0)
    (WORK / "keys").mkdir()
    keys = ClientKeys.generate(WORK / "keys")
    database = settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[1]
    layer = "redis doorbell" if settings.REDIS_URL else "polling"
    print(f"tsubame live viewers benchmark: {database} database, {layer}, {LINES} lines")
    team = Team.objects.create(name=NAME)
    user = get_user_model().objects.create_superuser(NAME, password="bench-password-1234")
    client = Client()
    client.force_login(user)
    cookie = f"sessionid={client.cookies['sessionid'].value}"
    # Where the script finds its gate: the sshd's login user cannot enter WORK.
    gates = Path(tempfile.mkdtemp(prefix="tsubame-bench-gates-"))
    gates.chmod(0o777)
    count_file = WORK / "queries"
    count_file.write_text("[0, 0]")
    with LocalSshd(keys, limits=GENEROUS_LIMITS) as sshd:
        server = trusted_server(team, sshd, keys)
        env = app_environment()
        processes = [spawn([sys.executable, "manage.py", "worker"], env, WORK / "worker.log")]
        try:
            port = free_port()
            serve = [sys.executable, __file__, "serve", str(count_file)]
            process = spawn([*serve, "-b", "127.0.0.1", "-p", str(port)], env, WORK / "daphne.log")
            processes.append(process)
            web = WebServer(port, process.pid, count_file)
            wait_for(lambda: listening(port), timeout=30, every=0.05)
            header = f"{'p50 ms':>8} {'p95 ms':>8} {'queries/s':>10} {'output/s':>10}"
            header += f" {'web CPU':>10}"
            print(f"{'viewers':>8} {header}")
            for viewers in VIEWERS:
                gate = gates / f"gate-{viewers}"
                job = Job.objects.create(
                    team=team, name=f"viewers-{viewers}", script=SCRIPT.format(gate=gate)
                )
                job.servers.set([server])
                execution = services.start_execution(job, trigger=Trigger.SYSTEM)
                measured = watch(web, cookie, execution.pk, gate, viewers)
                print(asyncio.run(measured), flush=True)
        finally:
            stop(processes)
            shutil.rmtree(gates)
    log = (WORK / "daphne.log").read_text(errors="replace")
    errors = [line for line in log.splitlines() if "ERROR" in line or "Traceback" in line]
    print(f"web server log: {len(errors)} errors" + (f", first: {errors[0]}" if errors else ""))
    print(f"logs: {WORK}")


def listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    except OSError:
        return False
    return True


if __name__ == "__main__":
    if sys.argv[1:2] == ["serve"]:
        serve_counting_queries(Path(sys.argv[2]), sys.argv[3:])
    else:
        main()
