"""A network partition between the worker and a server: the script must not outlive it.

The server runs in its own network namespace and the partition drops packets, so neither
side hears a reset or a FIN: each must notice the silence by itself.
"""

import pytest

from executions import runner
from executions.models import Execution, Status
from executions.tests.helpers import start, wait_until
from executions.tests.test_cancel_timeout import remote_processes, started, tree_script, unique_tag

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(300)]


def test_partitioned_server_stops_the_script_before_the_worker_gives_up(
    partitionable_sshd, make_server, make_job, in_background
):
    tag = unique_tag()
    execution = start(make_job(tree_script(tag), [make_server(partitionable_sshd)]))
    host_run = execution.host_runs.get()
    in_background(lambda: runner.run_execution(execution.pk))
    wait_until(lambda: started(execution), 15, "the script to start")
    assert len(remote_processes(tag)) >= 4

    partitionable_sshd.partition()

    def script_gone() -> bool:
        host_run.refresh_from_db()
        # Reported finished while the script still runs, a re-run would run it twice at once.
        assert host_run.status == Status.RUNNING or not remote_processes(tag)
        return not remote_processes(tag)

    wait_until(script_gone, 60, "the remote tree to be gone after the partition")
    # Bounded too: 60 s of unacknowledged heartbeats (SSH_HEARTBEAT_SECONDS apart).
    wait_until(
        lambda: Execution.objects.get(pk=execution.pk).is_finished, 90, "the worker to give up"
    )
    host_run.refresh_from_db()
    assert (host_run.status, host_run.error) == (
        Status.FAILED,
        "the connection to the server was lost",
    )
