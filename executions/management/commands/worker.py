import ctypes
import importlib
import logging
import multiprocessing
import multiprocessing.util
import os
import signal
import socket
import sys
import threading
import time
from datetime import timedelta

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import close_old_connections, connections
from django.db.models.functions import Now
from django_q.brokers import get_broker
from django_q.cluster import Cluster

from executions import reactions, retention, retries, search, services
from executions.models import WorkerHeartbeat
from jobs import scheduler
from notifications import sending

logger = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
EVENTS_PER_BATCH = 100
# A killed worker cannot remove its heartbeat row; after this nobody needs to see it.
FORGET_DEAD_WORKERS_AFTER = timedelta(days=1)


class Command(BaseCommand):
    help = (
        "Run a django-q2 cluster (like qcluster) plus the scheduler that starts scheduled "
        "runs, the sender of notifications, the pruner of old runs, and the reaper that "
        "marks executions of dead workers as lost, re-queues executions whose task went "
        "missing and runs the reactions to executions' events. Run as many as you like: "
        "reapers do not conflict. Whichever of its processes is killed, the rest exit "
        "within seconds, so a supervisor can start a fresh one."
    )

    def handle(self, *args: object, **options: object) -> None:
        # The registry holds its objects weakly; module-level functions live long enough.
        multiprocessing.util.register_after_fork(
            _forget_inherited_connections, _forget_inherited_connections
        )
        if sys.platform.startswith("linux"):
            multiprocessing.util.register_after_fork(_die_with_parent, _die_with_parent)
        else:
            logger.warning("not on Linux: the cluster's processes outlive a killed worker")
        _wait_for_broker()
        # Before the cluster forks its task processes, so that each starts with the code of a
        # run (paramiko and the rest) loaded: imported by a process's first task, it took
        # 0.6 s, and again after every recycle.
        importlib.import_module("executions.tasks")
        cluster = Cluster()
        # start() forks the sentinel and returns once it runs; the cluster's signal
        # handlers stop it on SIGTERM/SIGINT, which ends the loop below.
        cluster.start()
        # Started after the cluster's fork: a process forked while threads run gets copies
        # of their locks. Notifications go out, retention prunes and output is indexed for
        # search from this process, never from a task worker that runs jobs, so none of them
        # holds up a run.
        stop_threads = threading.Event()
        threads = [
            threading.Thread(target=serve, args=(stop_threads,), name=name)
            for name, serve in (
                ("notify", sending.serve),
                ("prune", retention.serve),
                ("search-index", search.serve),
            )
        ]
        for thread in threads:
            thread.start()
        # Beats from here on: this worker can take tasks (the broker answered).
        heartbeat = _Heartbeat()
        reaped_at = 0.0
        try:
            while cluster.sentinel.is_alive():
                reap = time.monotonic() - reaped_at >= settings.EXECUTION_REAP_EVERY_SECONDS
                if reap:
                    reaped_at = time.monotonic()
                _look_after_executions(reap=reap, heartbeat=heartbeat)
                cluster.sentinel.join(settings.SCHEDULE_TICK_SECONDS)
        finally:
            heartbeat.stop()
            # A notification attempt under way finishes and is recorded (it is bounded by
            # NOTIFICATION_TIMEOUT_SECONDS), a prune stops after its current batch; nothing
            # new starts after this.
            stop_threads.set()
            for thread in threads:
                thread.join()
        if cluster.sentinel.exitcode != 0:
            # Killed rather than stopped: its children died with it (see _die_with_parent).
            raise CommandError(f"the task cluster died (exit code {cluster.sentinel.exitcode})")


class _Heartbeat:
    """This worker's WorkerHeartbeat row, which /readyz and /metrics count as a live worker."""

    def __init__(self) -> None:
        self.host, self.pid = socket.gethostname(), os.getpid()
        self.name: str | None = None

    def beat(self) -> None:
        # The first beat (and one after the database lost the row) records the worker anew.
        if self.name is None or not WorkerHeartbeat.beat(self.name):
            self.name = WorkerHeartbeat.started(self.host, self.pid)

    def stop(self) -> None:
        if self.name is None:
            return
        try:
            WorkerHeartbeat.stopped(self.name)
        except Exception:
            # Stopping goes on: the row goes stale and stops counting as live by itself.
            logger.exception("removing the worker's heartbeat failed")
        finally:
            close_old_connections()


def _look_after_executions(reap: bool = True, heartbeat: _Heartbeat | None = None) -> None:
    """One tick: beat, fire due schedules, start due retries and react to events; when
    `reap`, also mark lost executions, requeue those whose task went missing and forget dead
    workers. Each step on its own: one that fails (the database blinked) does not hold up
    the others."""
    steps = [scheduler.fire_due_schedules, retries.start_due_retries, _process_all_events]
    if reap:
        steps = [
            services.reap_lost_executions,
            services.requeue_waiting_executions,
            _forget_dead_workers,
            *steps,
        ]
    if heartbeat is not None:
        # First: a long step (many due schedules) must not make a live worker look dead.
        steps = [heartbeat.beat, *steps]
    try:
        for step in steps:
            try:
                step()
            except Exception:
                logger.exception("%s failed", step.__name__)
    finally:
        close_old_connections()


def _forget_dead_workers() -> None:
    WorkerHeartbeat.objects.filter(beat_at__lt=Now() - FORGET_DEAD_WORKERS_AFTER).delete()


def _process_all_events() -> None:
    # Every event due, a batch at a time; one whose reactions failed waits for its lease.
    while len(reactions.process_events(EVENTS_PER_BATCH)) == EVENTS_PER_BATCH:
        pass


def _wait_for_broker() -> None:
    """Wait for the broker instead of exiting: django-q2's cluster cannot start without it.

    A worker that a supervisor restarts during an outage would otherwise exit again and
    again, and might be backing off when the broker returns. Reaping and notifying need no
    broker.
    """
    broker = get_broker()
    while True:
        try:
            broker.ping()
            return
        except Exception as exc:
            logger.warning("waiting for the task queue: %s", exc)
        _look_after_executions()
        # Notifications need no broker either: the runs lost meanwhile are told of now.
        try:
            sending.send_due()
        except Exception:
            logger.exception("sending notifications failed")
        time.sleep(settings.EXECUTION_REAP_EVERY_SECONDS)


# What forked processes inherited from the worker's database connections: kept, never used or
# closed (see _forget_inherited_connections).
_inherited: list[object] = []


def _forget_inherited_connections(_registered: object) -> None:
    """Run in every process that multiprocessing forks below the worker.

    A forked process inherits the worker's open database connections, and on PostgreSQL its
    connection pool: the same sockets as the worker's. Using one here would interleave two
    processes' traffic on one session; even closing one would end the worker's session. So
    they are set aside untouched (kept referenced, so that no garbage collection closes
    them) and this process opens its own, in a pool of its own.
    """
    for connection in connections.all(initialized_only=True):
        if connection.connection is not None:
            _inherited.append(connection.connection)
            connection.connection = None
        pools = getattr(connection, "_connection_pools", None)
        if pools:
            _inherited.append(dict(pools))
            pools.clear()


def _die_with_parent(_registered: object) -> None:
    """Run in every process that multiprocessing forks below the worker: the sentinel, and
    its task workers, pusher and monitor.

    Without this, a killed worker leaves its sentinel and task workers running on: taking
    tasks, heartbeating their executions so that no reaper ever marks them lost, and keeping
    their SSH sessions (and so the remote scripts) alive. The kernel kills a process whose
    parent dies, so killing any part kills everything below it; the worker's own process
    exits when its sentinel dies. Tasks run in the workers' processes, so their SSH
    connections close and the remote watcher stops the scripts.
    """
    # The signal follows the parent *thread*; django-q2 forks from each process's main thread.
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        # multiprocessing would swallow an exception raised here; say it where it is seen.
        reason = os.strerror(ctypes.get_errno())
        logger.error("prctl(PR_SET_PDEATHSIG) failed (%s): this outlives its parent", reason)
    parent = multiprocessing.parent_process()
    if parent is not None and os.getppid() != parent.pid:
        os._exit(1)  # the parent died before prctl: no signal will come
