"""A duplicated or redelivered task never runs a script twice."""

import threading

import pytest

from executions import runner
from executions.models import Status
from executions.tests.helpers import start

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]


def test_duplicated_task_runs_the_script_once(make_server, make_job, shared_dir):
    marker = shared_dir / "marker"
    execution = start(make_job(f"echo ran >> {marker}; sleep 0.5", [make_server()]))
    # The same task delivered three times at once, and once more after it finished.
    barrier = threading.Barrier(3)

    def deliver():
        barrier.wait()
        runner.run_execution(execution.pk)

    threads = [threading.Thread(target=deliver) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not any(thread.is_alive() for thread in threads)
    runner.run_execution(execution.pk)

    execution.refresh_from_db()
    assert execution.status == Status.SUCCEEDED
    assert marker.read_text() == "ran\n"
