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
  4. 200 executions of `echo hi` (one host each) started at once, until the last has
     finished, on a worker with its default 4 task processes,  vs  200 x `ssh host echo hi`
     with `xargs -P4`; plus the p95 of their wait in the queue (enqueued -> started)
1-3 log in anew for every run, as their references do; 4 is measured on a default worker,
which keeps a run's connection for the next run on the same server, and again with a new
login for every run. BENCH_MEASURES=3,4 takes only some of the measures.
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
from functools import partial
from pathlib import Path

import paramiko
from common import WORK, OpenSsh, trusted_server, wait_for  # sets Django up first
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
MANY = 200
# The reference for MANY executions: as many logins at a time as a default worker runs tasks.
REFERENCE_PARALLEL = 4
DEFAULT_WORKERS = 4


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
            self.servers.append(trusted_server(self.team, sshd, keys, f"bench-{i:02}"))

    def job(self, script: str, servers: list[Server]) -> Job:
        job = Job.objects.create(team=self.team, name=f"bench-{Job.objects.count()}", script=script)
        job.servers.set(servers)
        job.max_parallel = len(servers)
        job.save()
        return job

    def run(
        self,
        job: Job,
        until: Callable[[Execution], bool] | None = None,
        every: float = 0.002,
    ) -> tuple[float, Execution]:
        """Seconds from start_execution to `until` (default: finished), and the execution."""
        began = time.perf_counter()
        execution = services.start_execution(job, trigger=Trigger.SYSTEM)
        check = until or (lambda e: Execution.objects.get(pk=e.pk).is_finished)
        wait_for(lambda: check(execution), every=every)
        elapsed = time.perf_counter() - began
        wait_for(lambda: Execution.objects.get(pk=execution.pk).is_finished, every=0.05)
        execution.refresh_from_db()
        if execution.status != "succeeded":
            raise RuntimeError(f"benchmark execution {execution.pk} ended {execution.status}")
        return elapsed, execution

    def run_many(self, job: Job, count: int) -> tuple[float, list[Execution]]:
        """Seconds from starting `count` executions of `job`, one after the other as fast as
        they start, until the last has finished; and the executions."""
        began = time.perf_counter()
        ids = [services.start_execution(job, trigger=Trigger.SYSTEM).pk for _ in range(count)]
        unfinished = Execution.objects.filter(pk__in=ids, finished_at=None)
        wait_for(lambda: not unfinished.exists(), every=0.05)
        elapsed = time.perf_counter() - began
        executions = list(Execution.objects.filter(pk__in=ids))
        failed = [e.pk for e in executions if e.status != "succeeded"]
        if failed:
            raise RuntimeError(f"benchmark executions {failed} did not succeed")
        return elapsed, executions

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


def start_worker(workers: int, keep_idle: str | None) -> subprocess.Popen[bytes]:
    env = app_environment() | {"WORKERS": str(workers)}
    if keep_idle is not None:
        env["SSH_KEEP_IDLE_SECONDS"] = keep_idle
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
        rows: list[Row] = []
        # 1-3 on a worker with one task process that logs in anew for every run, as their
        # references do; 4 on a default worker (which keeps a run's connection for the next
        # run on the server), and again with a new login for every run.
        many = [many_executions] if 4 in MEASURES else []
        workers = [
            (1, "0", [MEASURE_FUNCTIONS[m] for m in MEASURES if m != 4]),
            (DEFAULT_WORKERS, None, many),
            (DEFAULT_WORKERS, "0", [partial(m, variant=", new logins") for m in many]),
        ]
        for processes, keep_idle, measures in workers:
            if not measures:
                continue
            worker = start_worker(processes, keep_idle)
            try:
                bench.run(bench.job("echo warm", bench.servers[:1]))  # the worker is up
                for measure in measures:
                    rows += measure(bench)
            finally:
                stop([worker])
    print(f"{'':34} {'tsubame':>10}  {'reference':<30} {'ratio':>6}  target")
    for name, ours_text, theirs_text, ratio, target in rows:
        ratio_text = f"{ratio:.2f}" if ratio is not None else ""
        print(f"{name:34} {ours_text:>10}  {theirs_text:<30} {ratio_text:>6}  {target}")


Row = tuple[str, str, str, float | None, str]


def first_output(bench: Bench) -> list[Row]:
    def has_output(execution: Execution) -> bool:
        return LogChunk.objects.filter(execution_id=execution.pk).exists()

    echo = bench.job("echo hi", bench.servers[:1])
    ours, theirs = [], []
    for _ in range(ROUNDS):  # interleaved: both see the same moments of a shared machine
        ours.append(bench.run(echo, until=has_output)[0])
        theirs.append(bench.openssh.seconds("echo hi", first_byte=True))
    first_ours, first_theirs = statistics.median(ours), statistics.median(theirs)
    return [
        ("1. start -> first output stored", f"{first_ours * 1000:.0f} ms",
         f"{first_theirs * 1000:.0f} ms (ssh echo)", first_ours / first_theirs, "<= 1.5x"),
    ]  # fmt: skip


def big_output(bench: Bench) -> list[Row]:
    one = bench.servers[:1]
    worker_pid = int(bench.run(bench.job("echo hi", one))[1].worker.rsplit(":", 1)[1])
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
    return [
        (f"2. {stored / 1e6:.0f} MB output stored", f"{mb_ours:.0f} MB/s",
         f"{mb_theirs:.0f} MB/s (ssh > /dev/null)", mb_ours / mb_theirs, ">= 0.25x"),
        ("   the same with 10 secrets masked", f"{mb_masked:.0f} MB/s",
         f"{mb_plain:.0f} MB/s (same run, unmasked)", mb_masked / mb_plain, ">= 0.8x"),
        ("   worker RSS growth (peak)", f"{(rss_peak - rss_before) / 1024:.0f} MB",
         "", None, "<= 100 MB"),
    ]  # fmt: skip


def fan_out(bench: Bench) -> list[Row]:
    fan = bench.job("echo hi", bench.servers)
    ours, theirs = [], []
    for _ in range(min(ROUNDS, 3)):
        # Looked at every 10 ms, not 2: a query every 2 ms takes a good part of a core
        # from the run it measures.
        ours.append(bench.run(fan, every=0.01)[0])
        theirs.append(bench.paramiko_pool(FANOUT))
    fan_ours, fan_pool = statistics.median(ours), statistics.median(theirs)
    return [
        (f"3. echo hi on {FANOUT} servers", f"{fan_ours:.2f} s",
         f"{fan_pool:.2f} s (paramiko pool)", fan_ours / fan_pool, "<= 1.5x"),
    ]  # fmt: skip


def many_executions(bench: Bench, variant: str = " at once") -> list[Row]:
    job = bench.job("echo hi", bench.servers[:1])
    ours, theirs, waits = [], [], []
    for _ in range(min(ROUNDS, 3)):
        seconds, executions = bench.run_many(job, MANY)
        ours.append(seconds)
        waits += [(e.started_at - e.enqueued_at).total_seconds() for e in executions]
        theirs.append(bench.openssh.seconds_in_parallel("echo hi", MANY, REFERENCE_PARALLEL))
    many_ours, many_theirs = statistics.median(ours), statistics.median(theirs)
    wait_p95 = statistics.quantiles(waits, n=20)[18]
    return [
        (f"4. {MANY} executions{variant}", f"{many_ours:.2f} s",
         f"{many_theirs:.2f} s (ssh, xargs -P{REFERENCE_PARALLEL})", many_ours / many_theirs,
         "< 1x"),
        (f"   queue wait p95 ({DEFAULT_WORKERS} processes)", f"{wait_p95:.2f} s", "", None, ""),
    ]  # fmt: skip


MEASURE_FUNCTIONS: dict[int, Callable[[Bench], list[Row]]] = {
    1: first_output,
    2: big_output,
    3: fan_out,
    4: many_executions,
}
# Which measures to take, e.g. BENCH_MEASURES=3,4; all of them by default.
MEASURES = [int(m) for m in os.getenv("BENCH_MEASURES", "1,2,3,4").split(",")]


if __name__ == "__main__":
    main()
