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

from executions import services
from executions.models import Execution, HostRun, Status
from executions.output import OutputWriter
from servers import ssh
from servers.models import Server

logger = logging.getLogger(__name__)

# How a finished remote command is recorded (other than a normal exit).
OUTCOMES = {
    "cancelled": (Status.CANCELLED, "cancelled"),
    "timed_out": (Status.TIMED_OUT, "timed out after {timeout} s"),
    "disconnected": (Status.FAILED, "the connection to the server was lost"),
}


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def run_execution(execution_id: int) -> None:
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
        with (
            OutputWriter(execution.pk) as writer,
            ThreadPoolExecutor(
                max_workers=max(1, min(execution.max_parallel, len(host_runs))),
                thread_name_prefix=f"exec-{execution.pk}",
            ) as pool,
        ):
            # list() waits for every host; _run_host records its own errors.
            list(pool.map(partial(_run_host, execution, writer=writer, stop=stop), host_runs))
    finally:
        done.set()
        watchdog.join()
    services.finish_execution(execution.pk)


def _run_host(
    execution: Execution, host_run: HostRun, *, writer: OutputWriter, stop: threading.Event
) -> None:
    try:
        if stop.is_set():
            services.finish_host_run(
                host_run, Status.CANCELLED, error="cancelled before it started"
            )
            return
        if not services.start_host_run(host_run):
            return
        # Read now, not when the execution was claimed: a host that waited for a parallel
        # slot runs with the server as it is (re-keyed, untrusted or deleted meanwhile).
        server = Server.objects.filter(pk=host_run.server_id).first()
        if server is None:
            services.finish_host_run(host_run, Status.FAILED, error="the server was deleted")
            return
        # The SSH phase can last hours: do not hold one database connection per host for it.
        connection.close()
        try:
            with ssh.connect(server.ssh_target()) as session:
                result = session.run(
                    execution.script.encode(),
                    execution.interpreter,
                    partial(writer.write, host_run.pk),
                    stop=stop,
                    timeout=execution.timeout_seconds,
                    kill_grace=settings.EXECUTION_KILL_GRACE_SECONDS,
                    heartbeat=settings.SSH_HEARTBEAT_SECONDS,
                    terminal=execution.use_terminal,
                )
        except ssh.SSHError as exc:
            writer.sync(host_run.pk)
            status = Status.CANCELLED if stop.is_set() else Status.FAILED
            services.finish_host_run(host_run, status, error=str(exc))
            return
        writer.sync(host_run.pk)
        if result.outcome == "exited":
            status = Status.SUCCEEDED if result.exit_code == 0 else Status.FAILED
            error = f"killed by signal {result.signal}" if result.signal else ""
        else:
            status, error = OUTCOMES[result.outcome]
            error = error.format(timeout=execution.timeout_seconds)
        services.finish_host_run(host_run, status, exit_code=result.exit_code, error=error)
    except Exception as exc:
        logger.exception("host run %s failed", host_run.pk)
        services.finish_host_run(host_run, Status.FAILED, error=f"internal error: {exc}")
    finally:
        connection.close()


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
