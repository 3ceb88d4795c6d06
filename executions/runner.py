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

logger = logging.getLogger(__name__)

OUTCOME_STATUS = {
    "cancelled": Status.CANCELLED,
    "timed_out": Status.TIMED_OUT,
    "disconnected": Status.FAILED,
}


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def run_execution(execution_id: int) -> None:
    execution = services.claim_execution(execution_id, worker_name())
    if execution is None:
        # A redelivered or duplicated task: whoever claimed it first runs it, once.
        logger.info("execution %s was already claimed; nothing to do", execution_id)
        return
    host_runs = list(execution.host_runs.select_related("server"))
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
            # list() waits for every host and re-raises nothing: _run_host records errors.
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
        if host_run.server is None:
            services.finish_host_run(host_run, Status.FAILED, error="the server was deleted")
            return
        try:
            with ssh.connect(host_run.server.ssh_target()) as session:
                result = session.run(
                    execution.script.encode(),
                    execution.interpreter,
                    partial(writer.write, host_run.pk),
                    stop=stop,
                    timeout=execution.timeout_seconds,
                    kill_grace=settings.EXECUTION_KILL_GRACE_SECONDS,
                )
        except ssh.SSHError as exc:
            writer.sync(host_run.pk)
            services.finish_host_run(host_run, Status.FAILED, error=str(exc))
            return
        writer.sync(host_run.pk)
        if result.outcome == "exited":
            status = Status.SUCCEEDED if result.exit_code == 0 else Status.FAILED
        else:
            status = OUTCOME_STATUS[result.outcome]
        error = {
            "cancelled": "cancelled",
            "timed_out": f"timed out after {execution.timeout_seconds} s",
            "disconnected": "the connection to the server was lost",
        }.get(result.outcome, f"killed by signal {result.signal}" if result.signal else "")
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
