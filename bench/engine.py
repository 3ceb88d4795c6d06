#!/usr/bin/env python
"""Benchmark of the execution engine against reference tools, side by side, in one run.

    .venv/bin/python bench/engine.py        (or: make bench)

Starts its own sshd on 127.0.0.1 (as the test suite does), a throw-away data directory
(SQLite unless DATABASE_URL/REDIS_URL are set), and one real `manage.py worker`, then prints:
  1. start of an execution -> first output chunk stored,  vs  `ssh host echo hi`
  2. MB/s for `head -c 200000000 /dev/zero | base64` fully stored, vs the OpenSSH client
     reading it to /dev/null; plus the worker process's RSS growth; and the same run with
     10 secret values to mask, vs the same run without (interleaved, medians)
  3. wall time of `echo hi` on 50 servers,  vs  a bare paramiko thread pool
Machines here are shared and noisy: read the ratios, not the absolute numbers.
"""

from __future__ import annotations

import os
import secrets
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import paramiko
from common import WORK, OpenSsh, wait_for  # sets Django up: before the app's modules
from django.conf import settings
from django.core.management import call_command
from django.db import connection
from django.db.models import Sum

from accounts.models import Team
from executions import services
from executions.models import Execution, LogChunk, Trigger
from jobs.models import Job, SecretVariable
from servers.models import Server
from servers.tests.sshd import GENEROUS_LIMITS, ClientKeys, LocalSshd
from tsubame.tests.processes import app_environment, spawn, stop

ROUNDS = int(os.getenv("BENCH_ROUNDS", "7"))
BIG_COMMAND = "head -c 200000000 /dev/zero | base64"
FANOUT = 50


def rss_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} for pid {pid}")


class Bench:
    def __init__(self, sshd: LocalSshd, keys: ClientKeys) -> None:
        self.sshd = sshd
        self.openssh = OpenSsh(sshd, keys)
        self.team = Team.objects.create(name="bench")
        self.servers = []
        for i in range(FANOUT):
            server = Server.objects.create(
                team=self.team,
                name=f"bench-{i:02}",
                host=sshd.host,
                port=sshd.port,
                username=sshd.username,
                private_key=keys.private_key,
            )
            server.trust_host_key(sshd.host_key, None)
            self.servers.append(server)

    def job(self, script: str, servers: list[Server]) -> Job:
        job = Job.objects.create(team=self.team, name=f"bench-{Job.objects.count()}", script=script)
        job.servers.set(servers)
        job.max_parallel = len(servers)
        job.save()
        return job

    def run(
        self, job: Job, until: Callable[[Execution], bool] | None = None
    ) -> tuple[float, Execution]:
        """Seconds from start_execution to `until` (default: finished), and the execution."""
        began = time.perf_counter()
        execution = services.start_execution(job, trigger=Trigger.SYSTEM)
        check = until or (lambda e: Execution.objects.get(pk=e.pk).is_finished)
        wait_for(lambda: check(execution))
        elapsed = time.perf_counter() - began
        wait_for(lambda: Execution.objects.get(pk=execution.pk).is_finished, every=0.05)
        execution.refresh_from_db()
        if execution.status != "succeeded":
            raise RuntimeError(f"benchmark execution {execution.pk} ended {execution.status}")
        return elapsed, execution

    def secrets(self, count: int) -> list[SecretVariable]:
        """Secret variables like real ones: tokens, a password with quotes, a multi-line key,
        and one that starts the way the benchmark's output does (so it is held back often)."""
        values = [
            "AAAAC3NzaC1lZDI1NTE5AAAAIGx0",
            "p4ss'w\"o$rd-`x`",
            "-----BEGIN KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END KEY-----",
            *(secrets.token_urlsafe(24) for _ in range(count - 3)),
        ]
        return [
            SecretVariable.objects.create(team=self.team, name=f"SECRET_{n}", value=value)
            for n, value in enumerate(values)
        ]

    def paramiko_pool(self, count: int) -> float:
        key = paramiko.Ed25519Key.from_private_key_file(str(self.openssh.key_file))

        def one(_: int) -> bytes:
            client = paramiko.SSHClient()
            client.load_host_keys(str(self.openssh.known_hosts))
            client.connect(
                self.sshd.host, self.sshd.port, username=self.sshd.username, pkey=key,
                look_for_keys=False, allow_agent=False,
            )  # fmt: skip
            try:
                _, stdout, _ = client.exec_command("echo hi")
                return stdout.read()
            finally:
                client.close()

        began = time.perf_counter()
        with ThreadPoolExecutor(count) as pool:
            results = list(pool.map(one, range(count)))
        elapsed = time.perf_counter() - began
        assert results == [b"hi\n"] * count
        return elapsed


def settle() -> None:
    """Start a run from the same state as the one it is compared with: earlier runs' output
    gone and on disk, so that the database's housekeeping after gigabytes of writes (a
    checkpoint, the WAL) is not timed as part of one of them."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(f"TRUNCATE {LogChunk._meta.db_table}")
            cursor.execute("CHECKPOINT")
        else:
            cursor.execute(f"DELETE FROM {LogChunk._meta.db_table}")
            cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def start_worker() -> subprocess.Popen[bytes]:
    env = app_environment() | {"WORKERS": "1"}
    return spawn([sys.executable, "manage.py", "worker"], env, WORK / "worker.log")


def main() -> None:
    call_command("migrate", verbosity=0)
    (WORK / "keys").mkdir()
    keys = ClientKeys.generate(WORK / "keys")
    database = settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[1]
    broker = "redis" if settings.REDIS_URL else "orm"
    print(f"tsubame engine benchmark: {database} database, {broker} broker, {ROUNDS} rounds")
    with LocalSshd(keys, limits=GENEROUS_LIMITS) as sshd:
        bench = Bench(sshd, keys)
        worker = start_worker()
        try:
            report(bench)
        finally:
            stop([worker])


def report(bench: Bench) -> None:
    one = bench.servers[:1]
    _, warm = bench.run(bench.job("echo warm", one))
    worker_pid = int(warm.worker.rsplit(":", 1)[1])

    def has_output(execution: Execution) -> bool:
        return LogChunk.objects.filter(execution_id=execution.pk).exists()

    echo = bench.job("echo hi", one)
    ours = [bench.run(echo, until=has_output)[0] for _ in range(ROUNDS)]
    theirs = [bench.openssh.seconds("echo hi", first_byte=True) for _ in range(ROUNDS)]
    first_ours, first_theirs = statistics.median(ours), statistics.median(theirs)

    rss_before = rss_kib(worker_pid, "VmRSS")
    big_seconds, big = bench.run(bench.job(BIG_COMMAND, one))
    stored = LogChunk.objects.filter(execution=big).aggregate(n=Sum("size"))["n"]
    rss_peak = rss_kib(worker_pid, "VmHWM")
    ssh_big = bench.openssh.seconds(BIG_COMMAND)
    mb_ours, mb_theirs = stored / big_seconds / 1e6, stored / ssh_big / 1e6

    masked_job = bench.job(BIG_COMMAND, one)
    masked_job.secret_variables.set(bench.secrets(10))
    plain_job = bench.job(BIG_COMMAND, one)
    plain, masked = [], []
    for _ in range(min(ROUNDS, 3)):
        settle()
        plain.append(stored / bench.run(plain_job)[0] / 1e6)
        settle()
        masked.append(stored / bench.run(masked_job)[0] / 1e6)
    mb_plain, mb_masked = statistics.median(plain), statistics.median(masked)

    fan = bench.job("echo hi", bench.servers)
    fan_ours = statistics.median(bench.run(fan)[0] for _ in range(3))
    fan_pool = statistics.median(bench.paramiko_pool(FANOUT) for _ in range(3))

    rows = [
        ("1. start -> first output stored", f"{first_ours * 1000:.0f} ms",
         f"{first_theirs * 1000:.0f} ms (ssh echo)", first_ours / first_theirs, "<= 1.5x"),
        (f"2. {stored / 1e6:.0f} MB output stored", f"{mb_ours:.0f} MB/s",
         f"{mb_theirs:.0f} MB/s (ssh > /dev/null)", mb_ours / mb_theirs, ">= 0.25x"),
        ("   the same with 10 secrets masked", f"{mb_masked:.0f} MB/s",
         f"{mb_plain:.0f} MB/s (same run, unmasked)", mb_masked / mb_plain, ">= 0.8x"),
        ("   worker RSS growth (peak)", f"{(rss_peak - rss_before) / 1024:.0f} MB",
         "", None, "<= 100 MB"),
        (f"3. echo hi on {FANOUT} servers", f"{fan_ours:.2f} s",
         f"{fan_pool:.2f} s (paramiko pool)", fan_ours / fan_pool, "<= 2x"),
    ]  # fmt: skip
    print(f"{'':34} {'tsubame':>10}  {'reference':<30} {'ratio':>6}  target")
    for name, ours_text, theirs_text, ratio, target in rows:
        ratio_text = f"{ratio:.2f}" if ratio is not None else ""
        print(f"{name:34} {ours_text:>10}  {theirs_text:<30} {ratio_text:>6}  {target}")


if __name__ == "__main__":
    main()
