"""More than one machine: two web processes and two workers on PostgreSQL + Redis share the
runs. A viewer on either web process follows a run that a worker executes, and a worker
killed mid-run is reaped by the other, as on separate machines."""

from __future__ import annotations

import os
import signal
import sys

import pytest
from django.conf import settings
from django.test import Client

from accounts.models import Role
from executions.models import Execution, Status
from executions.tests.helpers import start, wait_until
from tsubame.tests import rawsocket
from tsubame.tests.processes import app_environment, spawn, start_webserver, stop

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.real_queue,
    pytest.mark.timeout(240),
    pytest.mark.skipif(
        not (settings.REDIS_URL and "postgresql" in settings.DATABASES["default"]["ENGINE"]),
        reason="the production configuration: runs in the PostgreSQL + Redis suite",
    ),
]

# A dead worker's run is lost within seconds here (the defaults take a minute).
FAST_REAPER = {
    "EXECUTION_HEARTBEAT_SECONDS": "0.5",
    "EXECUTION_LOST_AFTER_SECONDS": "3",
    "EXECUTION_REAP_EVERY_SECONDS": "0.5",
    "WORKERS": "1",
}
LINES = 40


def test_two_web_processes_and_two_workers_share_live_output_and_reap_each_other(
    team, make_member, make_server, make_job, collected_static, tmp_path, shared_dir
):
    from django_q.brokers import get_broker

    get_broker().purge_queue()  # tasks left in Redis by earlier runs are not ours
    env = app_environment(collected_static) | FAST_REAPER
    workers = [spawn([sys.executable, "manage.py", "worker"], env, tmp_path / f"worker-{n}.log")
               for n in range(2)]  # fmt: skip
    processes = list(workers)
    try:
        urls = []
        for n in range(2):
            web, port = start_webserver(env, tmp_path / f"web-{n}.log")
            processes.append(web)
            urls.append(f"http://127.0.0.1:{port}")
        viewer = Client()
        viewer.force_login(make_member(team, Role.VIEWER))
        cookie = f"sessionid={viewer.cookies['sessionid'].value}"
        server = make_server()

        # Each web process streams, live, a run that one of the workers executes: the run
        # prints only once the viewer is connected.
        for n, url in enumerate(urls):
            go = shared_dir / f"go-{n}"
            script = (
                f'while [ ! -e "{go}" ]; do sleep 0.02; done; '
                f"for i in $(seq 1 {LINES}); do echo line $i; sleep 0.02; done"
            )
            execution = start(make_job(script, [server]))
            path = f"/ws/executions/{execution.pk}/"
            with rawsocket.connect(url, path, url, cookie) as (status, stream):
                assert " 101 " in status
                wait_until(
                    lambda e=execution: Execution.objects.filter(
                        pk=e.pk, status=Status.RUNNING
                    ).exists(),
                    60,
                    "a worker to start the run",
                )
                go.touch()
                received = rawsocket.messages_until_end(stream)
            text = "".join(
                chunk["text"] for message in received if message["type"] == "output"
                for chunk in message["chunks"]
            )  # fmt: skip
            assert text.splitlines() == [f"line {i}" for i in range(1, LINES + 1)]
            execution.refresh_from_db()
            assert execution.status == Status.SUCCEEDED

        # A worker killed mid-run: the other one's reaper marks the run lost.
        execution = start(make_job("echo started; sleep 600", [server]))
        wait_until(
            lambda: Execution.objects.filter(pk=execution.pk, status=Status.RUNNING).exists(),
            60,
            "a worker to start the long run",
        )
        execution.refresh_from_db()
        task_pid = int(execution.worker.rsplit(":", 1)[1])
        group = os.getpgid(task_pid)
        [killed] = [worker for worker in workers if worker.pid == group]
        os.killpg(group, signal.SIGKILL)
        killed.wait()
        wait_until(
            lambda: Execution.objects.filter(pk=execution.pk, status=Status.LOST).exists(),
            60,
            "the other worker to reap the dead worker's run",
        )
        [survivor] = [worker for worker in workers if worker is not killed]
        assert survivor.poll() is None
    finally:
        stop(processes)
