"""Output search and storage at 1 GB of text output, beside grep and zstd.

    .venv/bin/python bench/search.py            # SQLite
    DATABASE_URL=postgres://... REDIS_URL=redis://... .venv/bin/python bench/search.py

A generated journal-like log (BENCH_SEARCH_MB, default 1024 MB: web, ssh, database, cron and
kernel lines with their varying numbers, addresses and ids) is stored through the real
output writer as 1,000 runs of 5 teams, then indexed by the workers' indexer. One line holds
a needle that the writer's cut splits between two chunks. Printed:
- bytes on disk per byte of output, index included, beside `zstd -3` of the same log;
- how fast output was stored and indexed (the indexer runs behind the runs, in the worker);
- an output search through the API and the UI list, as a manager of one team (median of 9,
  in-process: the server's whole work), beside `grep -F` finding the needle in the log file
  (from the page cache).
"""

from __future__ import annotations

import os
import random
import statistics
import subprocess
import time
from pathlib import Path

from common import WORK  # sets Django up: before the app's modules
from django.conf import settings
from django.contrib.auth.models import User
from django.core.management import call_command
from django.db import connection
from django.test import Client

from accounts.models import ApiToken, Membership, Role, Team
from accounts.roles import role_group
from executions import search
from executions.models import Execution, HostRun, LogChunk, Status, Trigger
from executions.output import OutputWriter
from jobs.models import Job

TOTAL_BYTES = int(os.getenv("BENCH_SEARCH_MB", "1024")) * 1024 * 1024
RUNS, TEAMS = 1000, 5
NEEDLE = "needle-7f3a9c-split"
TARGET_MS, TARGET_BYTES = 300, 1.0
UNITS = ["nginx", "sshd", "cron", "postgres", "app", "kernel", "systemd", "dockerd"]
ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+/"


def journal_line(r: random.Random, n: int) -> str:
    ip = f"10.{r.randrange(256)}.{r.randrange(256)}.{r.randrange(256)}"
    kind = r.randrange(8)
    if kind == 0:
        status = r.choice([200, 200, 200, 304, 404, 500])
        message = (
            f'{ip} - - "GET /api/v1/items/{r.randrange(100000)}?page={r.randrange(50)} '
            f'HTTP/1.1" {status} {r.randrange(20000)} {r.random():.3f}'
        )
    elif kind == 1:
        key = "".join(r.choice(ALPHABET) for _ in range(43))
        message = (
            f"Accepted publickey for deploy from {ip} port {r.randrange(1024, 65535)} ssh2: "
            f"ED25519 SHA256:{key}"
        )
    elif kind == 2:
        message = (
            f"checkpoint complete: wrote {r.randrange(10000)} buffers ({r.random() * 100:.1f}%); "
            f"0 WAL file(s) added, {r.randrange(5)} removed, {r.randrange(9)} recycled; "
            f"write={r.random() * 30:.3f} s"
        )
    elif kind == 3:
        queue = r.choice(["default", "mail", "reports"])
        message = (
            f"worker {r.randrange(16)} finished job {r.randrange(10**6)} in "
            f"{r.random() * 5:.2f}s (queue={queue})"
        )
    elif kind == 4:
        user = r.choice(["deploy", "root", "backup", "ci"])
        message = f"Started Session {r.randrange(10**5)} of User {user}."
    elif kind == 5:
        message = (
            f"[{r.random() * 100000:.6f}] eth{r.randrange(3)}: link {r.choice(['up', 'down'])}, "
            f"1000 Mbps, full duplex, rx={r.randrange(10**9)} tx={r.randrange(10**9)}"
        )
    elif kind == 6:
        message = (
            f"level=info ts=2026-12-03T10:{r.randrange(60):02d}:{r.randrange(60):02d}."
            f'{r.randrange(1000):03d}Z caller=main.go:{r.randrange(900)} msg="request done" '
            f"trace_id={r.getrandbits(64):016x} status={r.choice([200, 201, 400, 503])}"
        )
    else:
        user = r.choice(["root", "www-data"])
        message = (
            f"pam_unix(cron:session): session opened for user {user}(uid={r.randrange(2000)}) "
            "by (uid=0)"
        )
    t = 36000 + n // 20
    clock = f"{t // 3600 % 24:02d}:{t // 60 % 60:02d}:{t % 60:02d}"
    return (
        f"Dec 03 {clock} web-{n % 50} {r.choice(UNITS)}[{1000 + r.randrange(30000)}]: {message}\n"
    )


def make_log(path: Path) -> None:
    """The log, RUNS pieces of equal size; the needle crosses a chunk boundary in piece 1."""
    if path.exists() and path.stat().st_size >= TOTAL_BYTES:
        return
    r = random.Random(7)
    per_run = TOTAL_BYTES // RUNS
    n = 0
    with path.open("wb") as out:
        for run in range(RUNS):
            lines, size = [], 0
            while size < per_run:
                line = journal_line(r, n).encode()
                lines.append(line)
                size += len(line)
                n += 1
            piece = b"".join(lines)[:per_run]
            if run == 1:
                # The writer's first chunk is what the first flush found: one 32 KiB read.
                cut = min(32768, per_run // 2) - 8
                piece = piece[:cut] + f" {NEEDLE}\n".encode() + piece[cut:]
                piece = piece[:per_run]
            out.write(piece)


def store(path: Path) -> list[Team]:
    teams = [Team.objects.create(name=f"team-{t}") for t in range(TEAMS)]
    jobs = [Job.objects.create(team=team, name="journal", script="journalctl") for team in teams]
    per_run = TOTAL_BYTES // RUNS
    with path.open("rb") as log:
        for run in range(RUNS):
            job = jobs[run % TEAMS]
            execution = Execution.objects.create(
                team=job.team,
                job=job,
                job_name=job.name,
                script=job.script,
                interpreter="/bin/sh",
                max_parallel=1,
                trigger=Trigger.API,
                status=Status.SUCCEEDED,
            )
            host_run = HostRun.objects.create(
                execution=execution, server_name="web-1", address="10.0.0.1"
            )
            with OutputWriter(execution.pk) as writer:
                # As an SSH channel hands it over: 32 KiB at a time.
                piece = log.read(per_run)
                for start in range(0, len(piece), 32768):
                    writer.write(host_run.pk, "stdout", piece[start : start + 32768])
            if run % 50 == 0:
                print(f"  stored {run + 1} runs", end="\r", flush=True)
    print()
    return teams


def bytes_on_disk() -> int:
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("VACUUM ANALYZE executions_logchunk")
            cursor.execute("SELECT pg_total_relation_size('executions_logchunk')")
            return cursor.fetchone()[0]
        cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        cursor.execute("PRAGMA page_count")
        pages = cursor.fetchone()[0]
        cursor.execute("PRAGMA freelist_count")
        free = cursor.fetchone()[0]
        cursor.execute("PRAGMA page_size")
        return (pages - free) * cursor.fetchone()[0]


def timed_ms(command: list[str]) -> float:
    times = []
    for _ in range(9):
        began = time.perf_counter()
        # Into a pipe: GNU grep writing to /dev/null stops at the first match.
        subprocess.run(command, check=True, capture_output=True)
        times.append((time.perf_counter() - began) * 1000)
    return statistics.median(times)


def median_ms(client: Client, url: str, expect: list[int] | None = None, **headers: str) -> float:
    times = []
    for _ in range(9):
        began = time.perf_counter()
        response = client.get(url, **headers)
        times.append((time.perf_counter() - began) * 1000)
        assert response.status_code == 200, (url, response.status_code)
        if expect is not None:
            found = [item["id"] for item in response.json()["results"]]
            assert found == expect, (found, expect)
    return statistics.median(times)


def main() -> None:
    settings.ALLOWED_HOSTS.append("testserver")  # the test client's host name
    call_command("migrate", verbosity=0)
    log = Path(os.getenv("BENCH_SEARCH_LOG", "/tmp/tsubame-bench-journal.log"))
    print(f"data: {WORK}  database: {connection.vendor}  log: {log}")
    make_log(log)
    raw = log.stat().st_size
    empty = bytes_on_disk()
    began = time.perf_counter()
    teams = store(log)
    stored_s = time.perf_counter() - began
    began = time.perf_counter()
    indexed = search.index_everything()
    indexed_s = time.perf_counter() - began
    assert indexed == raw, (indexed, raw)
    on_disk = bytes_on_disk() - empty
    zstd = subprocess.run(["zstd", "-3", "-c", str(log)], capture_output=True, check=True).stdout

    user = User.objects.create_user("manager", password="pw-bench-123!")
    Membership.objects.create(team=teams[1], user=user, role=role_group(Role.MANAGER))
    token = ApiToken.issue(user, "bench")[1]
    client = Client()
    client.force_login(user)
    wanted = list(
        Execution.objects.filter(team=teams[1]).order_by("id").values_list("id", flat=True)[:1]
    )
    api_ms = median_ms(
        Client(), f"/api/v1/executions/?q={NEEDLE}", wanted, HTTP_AUTHORIZATION=f"Bearer {token}"
    )
    ui_ms = median_ms(client, f"/executions/?q={NEEDLE}")
    grep_ms = timed_ms(["grep", "-F", "-c", NEEDLE, str(log)])

    mb = raw / 1e6
    print(f"{raw / 2**20:.0f} MiB of output in {RUNS} runs of {TEAMS} teams")
    print(f"stored at {mb / stored_s:.0f} MB/s, indexed at {mb / indexed_s:.1f} MB/s (behind)")
    chunks = LogChunk.objects.filter(execution_id__in=wanted).values_list("data", flat=True)
    whole = any(NEEDLE.encode() in bytes(data) for data in chunks)
    print(f"the needle is {'inside one chunk' if whole else 'split between two chunks'}")
    print(f"{'measure':<34} {'tsubame':>10} {'reference':>12} {'ratio':>7} {'target':>8}")
    rows = [
        (
            "bytes on disk per byte, with index",
            on_disk / raw,
            len(zstd) / raw,
            "zstd -3",
            TARGET_BYTES,
        ),
        ("output search, API (ms)", api_ms, grep_ms, "grep -F", TARGET_MS),
        ("output search, UI list (ms)", ui_ms, grep_ms, "grep -F", TARGET_MS),
    ]
    for name, figure, reference, tool, target in rows:
        print(
            f"{name:<34} {figure:>10.2f} {reference:>8.2f} {tool:<7} "
            f"{figure / reference:>5.2f}x {target:>8}"
        )


if __name__ == "__main__":
    main()
