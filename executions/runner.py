"""Runs a claimed execution inside a worker process: every host over SSH, in parallel."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial

from django.conf import settings
from django.db import close_old_connections, connection

from executions import live, services
from executions.inputs import InputError, RunInputs, run_inputs
from executions.masking import SecretMasker
from executions.models import Execution, HostRun, Status
from executions.output import OutputWriter
from servers import ssh
from servers.models import Server
from servers.services import record_run_results

logger = logging.getLogger(__name__)

# How a finished remote command is recorded (other than a normal exit).
OUTCOMES = {
    "cancelled": (Status.CANCELLED, "cancelled"),
    "timed_out": (Status.TIMED_OUT, "timed out after {timeout} s"),
    "disconnected": (Status.FAILED, "the connection to the server was lost"),
}


# This process's SSH connections, kept between runs (SSH_KEEP_IDLE_SECONDS): the next run on
# a server skips the login.
_connections = ssh.ConnectionPool()


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def run_execution(execution_id: int) -> None:
    # This thread's rings (claimed, finished) go out from a thread of their own, on one
    # connection to the channel layer: rung here, each opened one (13 ms with Redis), and the
    # claim's held up the start of the hosts.
    with live.Ringer(execution_id):
        _run_execution(execution_id)


def _run_execution(execution_id: int) -> None:
    execution = services.claim_execution(execution_id, worker_name())
    if execution is None:
        # A redelivered or duplicated task: whoever claimed it first runs it, once.
        logger.info("execution %s was already claimed; nothing to do", execution_id)
        return
    host_runs = list(execution.host_runs.all())
    stop = threading.Event()
    done = threading.Event()
    watchdog = threading.Thread(
        target=_watch, args=(execution.pk, stop, done), name=f"watch-{execution.pk}", daemon=True
    )
    watchdog.start()
    try:
        ran = _run_hosts(execution, host_runs, stop)
    finally:
        done.set()
        watchdog.join()
    try:
        services.finish_execution(execution.pk)
    finally:
        # What the hosts found out about their servers is kept even if finishing failed.
        if ran:
            record_run_results(execution.host_runs.all())


def _run_hosts(execution: Execution, host_runs: list[HostRun], stop: threading.Event) -> bool:
    """Every host, in parallel; False if none could start because the run's inputs could
    not be given (which says nothing about the servers)."""
    try:
        inputs = run_inputs(execution)
    except InputError as exc:
        services.finish_host_runs(
            [services.HostEnd(h, Status.FAILED, error=str(exc)) for h in host_runs]
        )
        return False
    # Enforced here too: a job saved before the limit existed, or above a limit lowered
    # since, runs with the limit of today.
    parallel = min(execution.max_parallel, settings.EXECUTION_MAX_PARALLEL, len(host_runs))
    # Prepared while the watchdog heartbeats: many secrets take a moment.
    masker = inputs.masker()
    with (
        OutputWriter(execution.pk) as writer,
        ThreadPoolExecutor(
            max_workers=max(1, parallel), thread_name_prefix=f"exec-{execution.pk}"
        ) as pool,
    ):
        run_host = partial(_run_host, execution, inputs, masker, writer=writer, stop=stop)
        # list() waits for every host; _run_host records its own errors.
        list(pool.map(run_host, host_runs))
    return True


class MaskedOutput:
    """One host's output on its way to the writer, its secrets masked per stream as it
    arrives: the raw bytes never reach the writer, the database or anything that reads it.

    Masking here, in the host's thread, overlaps with the writer's database work."""

    def __init__(self, writer: OutputWriter, host_run_id: int, masker: SecretMasker) -> None:
        self._write = partial(writer.write, host_run_id)
        self._streams = {name: masker.stream() for name in ("stdout", "stderr")} if masker else {}

    def __call__(self, stream: ssh.Stream, data: bytes) -> None:
        self._write(stream, self._streams[stream].feed(data) if self._streams else data)

    def end(self) -> None:
        """The host's streams ended: what was held back as a possible start of a secret."""
        for stream, masked in self._streams.items():
            self._write(stream, masked.finish())


def _run_host(
    execution: Execution,
    inputs: RunInputs,
    masker: SecretMasker,
    host_run: HostRun,
    *,
    writer: OutputWriter,
    stop: threading.Event,
) -> None:
    """One host, start to finish. Its database work runs on the writer's connection."""
    output = MaskedOutput(writer, host_run.pk, masker)

    def finish(status: Status, *, exit_code: int | None = None, error: str = "") -> None:
        output.end()
        # After the host's output is committed, together with the other hosts ending now.
        # An error message can quote what the script did: masked like its output.
        end = services.HostEnd(host_run, status, exit_code, masker.mask_text(error))
        writer.call_together(services.finish_host_runs, end, after_output_of=host_run.pk)

    try:
        if stop.is_set():
            finish(Status.CANCELLED, error="cancelled before it started")
            return
        target = writer.call_together(_start_hosts, host_run)
        if target is None:
            return
        try:
            result = _connections.run(
                target,
                execution.script.encode(),
                execution.interpreter,
                output,
                keep_seconds=settings.SSH_KEEP_IDLE_SECONDS,
                stop=stop,
                timeout=execution.timeout_seconds,
                kill_grace=settings.EXECUTION_KILL_GRACE_SECONDS,
                heartbeat=settings.SSH_HEARTBEAT_SECONDS,
                terminal=execution.use_terminal,
                environment=inputs.for_host(host_run.server_name),
            )
        except ssh.SSHError as exc:
            status = Status.CANCELLED if stop.is_set() else Status.FAILED
            finish(status, error=str(exc))
            return
        if result.outcome == "exited":
            status = Status.SUCCEEDED if result.exit_code == 0 else Status.FAILED
            error = f"killed by signal {result.signal}" if result.signal else ""
        else:
            status, error = OUTCOMES[result.outcome]
            error = error.format(timeout=execution.timeout_seconds)
        finish(status, exit_code=result.exit_code, error=error)
    except Exception as exc:
        logger.exception("host run %s failed", host_run.pk)
        try:
            finish(Status.FAILED, error=f"internal error: {exc}")
        except Exception:
            # Nothing can be recorded now; finishing the execution closes this host run.
            logger.exception("could not record the failure of host run %s", host_run.pk)


def _start_hosts(host_runs: list[HostRun]) -> list[ssh.Target | None]:
    """Mark hosts running and say where to connect to each; None for one that must not run.

    The hosts that ask at the same moment (all of them, when a run begins) start in one
    transaction and one read of their servers.
    """
    queued = services.start_host_runs(host_runs)
    started = [host_run for host_run in host_runs if host_run.pk in queued]
    # Read now, not when the execution was claimed: a host that waited for a parallel
    # slot runs with the server as it is (re-keyed, untrusted or deleted meanwhile).
    servers = Server.objects.in_bulk([host_run.server_id for host_run in started])
    targets = {h.pk: _target(h, servers.get(h.server_id)) for h in started}
    return [targets.get(host_run.pk) for host_run in host_runs]


def _target(host_run: HostRun, server: Server | None) -> ssh.Target | None:
    if server is None:
        services.finish_host_run(host_run, Status.FAILED, error="the server was deleted")
        return None
    try:
        return server.ssh_target()
    except ssh.SSHError as exc:  # e.g. credentials that no configured key decrypts
        services.finish_host_run(host_run, Status.FAILED, error=str(exc))
        return None


def _watch(execution_id: int, stop: threading.Event, done: threading.Event) -> None:
    """Heartbeat for the reaper, and turn a cancel request into the stop event."""
    last_beat = time.monotonic()
    try:
        while not done.wait(settings.EXECUTION_CANCEL_POLL_SECONDS):
            try:
                if services.is_cancel_requested(execution_id):
                    stop.set()
                if time.monotonic() - last_beat >= settings.EXECUTION_HEARTBEAT_SECONDS:
                    last_beat = time.monotonic()
                    if not services.heartbeat(execution_id):
                        stop.set()  # reaped or finished elsewhere: stop spending effort
            except Exception:
                logger.exception("watchdog of execution %s", execution_id)
                close_old_connections()
    finally:
        connection.close()
