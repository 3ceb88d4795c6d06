import ctypes
import logging
import multiprocessing
import multiprocessing.util
import os
import signal
import sys
import threading
import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import close_old_connections
from django_q.brokers import get_broker
from django_q.cluster import Cluster

from executions import reactions, retries, services
from jobs import scheduler
from notifications import sending

logger = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
EVENTS_PER_BATCH = 100


class Command(BaseCommand):
    help = (
        "Run a django-q2 cluster (like qcluster) plus the scheduler that starts scheduled "
        "runs, the sender of notifications, and the reaper that marks executions of "
        "dead workers as lost, re-queues executions whose task went missing and runs the "
        "reactions to executions' events. Run as many "
        "as you like: reapers do not conflict. Whichever of its processes is killed, the "
        "rest exit within seconds, so a supervisor can start a fresh one."
    )

    def handle(self, *args: object, **options: object) -> None:
        if sys.platform.startswith("linux"):
            # The registry holds its object weakly; a module-level function lives long enough.
            multiprocessing.util.register_after_fork(_die_with_parent, _die_with_parent)
        else:
            logger.warning("not on Linux: the cluster's processes outlive a killed worker")
        _wait_for_broker()
        cluster = Cluster()
        # start() forks the sentinel and returns once it runs; the cluster's signal
        # handlers stop it on SIGTERM/SIGINT, which ends the loop below.
        cluster.start()
        # Started after the cluster's fork: a process forked while threads run gets copies
        # of their locks. Notifications go out from this process, never from a task worker
        # that runs jobs, so a slow destination holds up no run.
        stop_sending = threading.Event()
        sender = threading.Thread(target=sending.serve, args=(stop_sending,), name="notify")
        sender.start()
        reaped_at = 0.0
        try:
            while cluster.sentinel.is_alive():
                reap = time.monotonic() - reaped_at >= settings.EXECUTION_REAP_EVERY_SECONDS
                if reap:
                    reaped_at = time.monotonic()
                _look_after_executions(reap=reap)
                cluster.sentinel.join(settings.SCHEDULE_TICK_SECONDS)
        finally:
            # An attempt under way finishes and is recorded (it is bounded by
            # NOTIFICATION_TIMEOUT_SECONDS); none starts after this.
            stop_sending.set()
            sender.join()
        if cluster.sentinel.exitcode != 0:
            # Killed rather than stopped: its children died with it (see _die_with_parent).
            raise CommandError(f"the task cluster died (exit code {cluster.sentinel.exitcode})")


def _look_after_executions(reap: bool = True) -> None:
    """One tick: fire due schedules, start due retries and react to events; when `reap`,
    also mark lost executions and requeue those whose task went missing. Each step on its
    own: one that fails (the database blinked) does not hold up the others."""
    steps = [scheduler.fire_due_schedules, retries.start_due_retries, _process_all_events]
    if reap:
        steps = [services.reap_lost_executions, services.requeue_waiting_executions, *steps]
    try:
        for step in steps:
            try:
                step()
            except Exception:
                logger.exception("%s failed", step.__name__)
    finally:
        close_old_connections()


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
