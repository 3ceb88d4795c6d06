"""`tsubame run --follow` and `tsubame logs --follow` against the real stack: the output as
stored, and an exit status that says how the run ended."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pty
import re
import signal
import subprocess
import sys
from datetime import timedelta

import pytest
from django.utils import timezone

from executions import services
from executions.models import Execution, LogChunk, Status
from executions.tests.helpers import output, start, wait_until
from executions.tests.live_client import GATED_SCRIPT, go
from jobs.parameters import clean_definitions

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(300)]


def execution_of(stderr: str) -> Execution:
    """The execution a `run` announced on its first line."""
    number = re.match(r"execution (\d+) ", stderr)
    assert number, stderr
    return Execution.objects.get(pk=int(number[1]))


def announced(process: subprocess.Popen[bytes]) -> Execution:
    assert process.stderr is not None
    return execution_of(process.stderr.readline().decode())


def read_until(process: subprocess.Popen[bytes], text: bytes) -> bytes:
    assert process.stdout is not None
    seen = b""
    while text not in seen:
        line = process.stdout.readline()
        assert line, f"the output ended before {text!r}: {seen!r}"
        seen += line
    return seen


def test_run_follow_prints_the_output_and_exits_with_the_outcome(cli, make_server, make_job):
    server = make_server()
    make_job("echo all good", [server], name="good")
    make_job("echo broken >&2; exit 3", [server], name="bad")
    make_job("echo slow; sleep 30", [server], name="slow", timeout_seconds=1)
    make_job(
        'echo "version $VERSION"; [ "$PASSWORD" = hunter2-secret ] && echo secret-ok',
        [server],
        name="params",
        parameters=clean_definitions(
            [
                {"name": "VERSION", "type": "integer", "required": True},
                {"name": "PASSWORD", "type": "secret", "required": True},
            ]
        ),
    )

    good = cli.run("run", "good", "--follow")
    assert (good.returncode, good.stdout) == (0, "all good\n")
    last = good.stderr.splitlines()[-1]
    assert last.startswith(f"execution {execution_of(good.stderr).pk}: succeeded")

    bad = cli.run("run", "bad", "--follow")
    assert (bad.returncode, bad.stdout) == (1, "")
    assert "broken\n" in bad.stderr  # the run's stderr goes to ours
    assert bad.stderr.splitlines()[-1].endswith(f"; {server.name}: failed (exit 3)")

    slow = cli.run("run", "slow", "--follow")
    assert (slow.returncode, slow.stdout) == (4, "slow\n")
    assert execution_of(slow.stderr).status == Status.TIMED_OUT

    # --json: the execution on stdout (at its end when followed), the output out of its way.
    started = json.loads(cli.run("run", "good", "--json").stdout)
    assert started["job_name"] == "good"
    followed = cli.run("run", "good", "--follow", "--json")
    assert json.loads(followed.stdout)["status"] == "succeeded"
    assert "all good\n" in followed.stderr

    # A secret from the environment, never from the command line.
    params = cli.run(
        "run", "params", "--param", "VERSION=7", "--follow", TSUBAME_PARAM_PASSWORD="hunter2-secret"
    )
    assert (params.returncode, params.stdout) == (0, "version 7\nsecret-ok\n")


def test_a_cancelled_run_exits_3(cli, make_server, make_job, shared_dir):
    make_job(GATED_SCRIPT.format(dir=shared_dir), [make_server()], name="gated")
    process = cli.start("run", "gated", "--follow")
    try:
        execution = announced(process)
        read_until(process, b"step1\n")
        cancel = cli.run("cancel", str(execution.pk))
        assert cancel.returncode == 0, cancel.stderr
        assert cancel.stdout == f"execution {execution.pk}: cancel requested (it was running)\n"
        assert process.wait(60) == 3
    finally:
        process.kill()
    execution.refresh_from_db()
    assert execution.status == Status.CANCELLED


def test_ctrl_c_detaches_or_with_cancel_on_interrupt_cancels(
    cli, make_server, make_job, shared_dir
):
    make_job(GATED_SCRIPT.format(dir=shared_dir), [make_server()], name="gated")
    detached = cli.start("run", "gated", "--follow")
    try:
        execution = announced(detached)
        read_until(detached, b"step1\n")
        detached.send_signal(signal.SIGINT)
        assert detached.wait(30) == 130
        assert f"tsubame logs {execution.pk} --follow" in detached.stderr.read().decode()
        execution.refresh_from_db()
        assert execution.status == Status.RUNNING  # detached, not stopped

        # Re-attached, it prints the rest and the end, here a cancel on Ctrl-C.
        attached = cli.start("logs", str(execution.pk), "--follow", "--cancel-on-interrupt")
        read_until(attached, b"step1\n")
        attached.send_signal(signal.SIGINT)
        assert attached.wait(60) == 3
    finally:
        for step in range(1, 5):
            go(shared_dir, step)
        detached.kill()
    execution.refresh_from_db()
    assert execution.status == Status.CANCELLED


def test_a_lost_run_exits_5(cli, make_server, make_job, settings):
    execution = start(make_job("sleep 30", [make_server()]))  # not queued: no worker runs it
    services.claim_execution(execution.pk, "a worker that dies")
    process = cli.start("logs", str(execution.pk), "--follow")
    try:
        # Its worker's heartbeat stopped long ago: the reaper marks it lost.
        an_hour_ago = timezone.now() - timedelta(hours=1)
        Execution.objects.filter(pk=execution.pk).update(heartbeat_at=an_hour_ago)
        assert services.reap_lost_executions() == [execution.pk]
        assert process.wait(60) == 5
    finally:
        process.kill()


def on_a_terminal(command: list[str], env: dict[str, str]) -> bytes:
    """What a command prints with its stdout on a terminal (a pseudo-terminal here)."""
    leader, follower = pty.openpty()
    process = subprocess.Popen(command, env=env, stdout=follower, stderr=subprocess.DEVNULL)
    os.close(follower)
    seen = b""
    with contextlib.suppress(OSError):  # EIO once the command has closed the terminal
        while data := os.read(leader, 65536):
            seen += data
    os.close(leader)
    assert process.wait(60) == 0
    return seen


def test_a_finished_run_follows_the_same_with_a_prefix_per_host(cli, make_server, make_job):
    web1, web2 = make_server(name="web-1"), make_server(name="web-22")
    make_job("echo one; printf '\\033[1mtwo\\033[0m\\nthree'", [web1, web2], name="both")
    started = cli.run("run", "both")
    assert started.returncode == 0, started.stderr
    execution = Execution.objects.get(pk=int(started.stdout.split()[1]))
    wait_until(lambda: Execution.objects.get(pk=execution.pk).is_finished, 60, "the end")

    # Piped: plain text, each line with its host (the order of hosts is the order stored).
    followed = cli.run("logs", str(execution.pk), "--follow")
    assert followed.returncode == 0
    for name in ("web-1 ", "web-22"):
        lines = [line for line in followed.stdout.splitlines() if line.startswith(name)]
        assert lines == [f"{name} | one", f"{name} | two", f"{name} | three"]
    raw = subprocess.run(
        cli.command("logs", str(execution.pk), "--follow", "--raw"),
        env=cli.env,
        capture_output=True,
        timeout=60,
    )
    assert raw.stdout == output(execution)
    one_host = subprocess.run(
        cli.command("logs", str(execution.pk), "--host", "web-22"),
        env=cli.env,
        capture_output=True,
        timeout=60,
    )
    assert one_host.stdout == b"one\ntwo\nthree"
    # On a terminal the colours stay, the run's own and the hosts'.
    coloured = on_a_terminal(cli.command("logs", str(execution.pk), "--follow"), cli.env)
    assert b"\x1b[1mtwo\x1b[0m" in coloured
    assert b"\x1b[36mweb-1  |\x1b[0m one" in coloured


def test_a_dropped_connection_resumes_with_no_gap_and_no_duplicate(
    cli, cutting_proxy, make_server, make_job
):
    # Lines that say where they are, so any gap or repeat shows; a few MB, so each cut
    # falls in the middle of a message.
    make_job("seq 1 1000000", [make_server()], name="count")
    proxy = cutting_proxy(cuts=3, after=1_000_000)
    followed = subprocess.run(
        cli.command("run", "count", "--follow"),
        env=cli.env | {"TSUBAME_URL": proxy.url},
        capture_output=True,
        timeout=240,
    )
    assert followed.returncode == 0, followed.stderr
    assert proxy.cut == 3
    execution = execution_of(followed.stderr.decode())
    assert followed.stdout == output(execution)
    assert followed.stdout == "".join(f"{n}\n" for n in range(1, 1_000_001)).encode()


MEASURE = (
    "import resource, subprocess, sys; code = subprocess.call(sys.argv[1:]); "
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); "
    "sys.exit(code)"
)


def followed_with_peak_memory(cli, job: str, tmp_path) -> tuple[Execution, str, int]:
    """Run `job` followed, its output into a file; (execution, sha256 of it, client's peak KiB)."""
    path = tmp_path / f"{job}.out"
    with path.open("wb") as out:
        done = subprocess.run(
            [sys.executable, "-c", MEASURE, *cli.command("run", job, "--follow")],
            env=cli.env,
            stdout=out,
            stderr=subprocess.PIPE,
            timeout=280,
        )
    stderr = done.stderr.decode()
    assert done.returncode == 0, stderr
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while block := file.read(1 << 20):
            digest.update(block)
    return execution_of(stderr), digest.hexdigest(), int(stderr.splitlines()[-1])


def test_a_100_mb_log_is_followed_in_flat_memory(cli, make_server, make_job, tmp_path):
    server = make_server()
    make_job("seq 1 1000", [server], name="small")
    make_job("head -c 75000000 /dev/zero | base64", [server], name="big")
    _small, _digest, baseline = followed_with_peak_memory(cli, "small", tmp_path)
    execution, digest, peak = followed_with_peak_memory(cli, "big", tmp_path)

    stored = hashlib.sha256()
    size = 0
    for chunk in LogChunk.objects.filter(execution=execution).order_by("seq").iterator():
        stored.update(bytes(chunk.data))
        size += len(chunk.data)
    assert size > 100_000_000
    assert digest == stored.hexdigest()
    # What 100 MB of output adds to the client's peak: a few messages in flight, not the log.
    assert peak - baseline < 20 * 1024, f"{baseline} KiB for 1,000 lines, {peak} KiB for 100 MB"
    print(f"client peak RSS: {baseline} KiB for a small log, {peak} KiB for {size:,} bytes")
