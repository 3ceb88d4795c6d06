"""Cancel and timeout stop the whole remote process tree, verified on the remote side."""

import socket

import pytest

from executions import runner, services
from executions.models import Execution, Status
from executions.tests.helpers import output, remote_processes, start, unique_tag, wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]


def tree_script(tag: str, *, ignore_term: bool = False) -> str:
    """Children, grandchildren and a double-forked orphan, all sleeping `tag` seconds."""
    return (
        ("trap '' TERM\n" if ignore_term else "")
        + f"sleep {tag} &\n"
        + f"sh -c 'sleep {tag}; true' &\n"
        + f"(sh -c 'sleep {tag} & wait' &)\n"
        + "echo started\n"
        + f"sleep {tag}\n"
    )


def started(execution: Execution) -> bool:
    return b"started" in output(execution)


@pytest.mark.parametrize("ignore_term", [False, True], ids=["plain", "script-ignores-TERM"])
def test_cancel_kills_the_remote_tree(make_server, make_job, in_background, ignore_term):
    tag = unique_tag()
    execution = start(make_job(tree_script(tag, ignore_term=ignore_term), [make_server()]))
    in_background(lambda: runner.run_execution(execution.pk))
    wait_until(lambda: started(execution), 15, "the script to start")
    assert len(remote_processes(tag)) >= 4

    assert services.cancel_execution(execution)
    wait_until(lambda: not remote_processes(tag), 5, "the remote tree to be gone")
    wait_until(lambda: Execution.objects.get(pk=execution.pk).is_finished, 10, "the run to finish")
    execution.refresh_from_db()
    assert execution.status == Status.CANCELLED
    assert execution.host_runs.get().status == Status.CANCELLED


def test_cancelling_a_queued_execution_never_runs_it(make_server, make_job, shared_dir):
    marker = shared_dir / "ran"
    execution = start(make_job(f"touch {marker}", [make_server()]))
    assert services.cancel_execution(execution)
    runner.run_execution(execution.pk)  # the task arrives after the cancel
    execution.refresh_from_db()
    assert execution.status == Status.CANCELLED
    assert execution.host_runs.get().status == Status.CANCELLED
    assert not marker.exists()
    assert not services.cancel_execution(execution)  # already finished


def test_timeout_stops_the_run_and_its_tree(make_server, make_job):
    tag = unique_tag()
    job = make_job(tree_script(tag), [make_server()], timeout_seconds=1)
    execution = start(job)
    runner.run_execution(execution.pk)
    execution.refresh_from_db()
    assert execution.status == Status.TIMED_OUT
    host_run = execution.host_runs.get()
    assert host_run.status == Status.TIMED_OUT
    assert "timed out" in host_run.error
    assert output(execution, stream="stdout") == b"started\n"
    wait_until(lambda: not remote_processes(tag), 5, "the remote tree to be gone")


def test_cancel_while_connecting_marks_the_host_cancelled(
    make_server, make_job, settings, in_background
):
    settings.SSH_CONNECT_TIMEOUT_SECONDS = 2.0
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)  # accepts TCP, never says a word of SSH
        execution = start(make_job("echo never", [make_server(port=silent.getsockname()[1])]))
        in_background(lambda: runner.run_execution(execution.pk))
        wait_until(
            lambda: execution.host_runs.filter(status=Status.RUNNING).exists(), 10, "connecting"
        )
        services.cancel_execution(execution)
        wait_until(lambda: Execution.objects.get(pk=execution.pk).is_finished, 20, "the end")
    execution.refresh_from_db()
    assert execution.status == Status.CANCELLED
    assert execution.host_runs.get().status == Status.CANCELLED


def test_cancel_arriving_after_every_host_succeeded_keeps_succeeded(make_server, make_job):
    execution = start(make_job("true", [make_server()]))
    assert services.claim_execution(execution.pk, "test")
    host_run = execution.host_runs.get()
    services.start_host_run(host_run)
    services.finish_host_run(host_run, Status.SUCCEEDED, exit_code=0)
    assert services.cancel_execution(execution)  # still running: the flag is set
    assert services.finish_execution(execution.pk)
    execution.refresh_from_db()
    assert execution.status == Status.SUCCEEDED
