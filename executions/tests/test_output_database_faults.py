"""Output is never dropped: a database connection lost under the writer is waited out."""

from __future__ import annotations

import pytest
from django.db import connection

from executions import services
from executions.models import Execution, HostRun, Status
from executions.output import OutputWriter
from executions.tests.helpers import output

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(60)]


def drop_other_connections() -> int:
    """Terminate every other client session on the test database, as a failover or restart
    does. Client sessions only: an autovacuum worker busy with the test database after a
    suite's worth of writes is one of its sessions too."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid() "
            "AND backend_type = 'client backend'"
        )
        return cursor.fetchone()[0]


def test_output_written_after_the_writers_connection_dropped_is_stored(team, caplog):
    if connection.vendor != "postgresql":
        pytest.skip("terminates PostgreSQL sessions; run with DATABASE_URL=postgres://...")
    execution = Execution.objects.create(
        team=team, job_name="j", script="", interpreter="/bin/sh", max_parallel=1, trigger="system"
    )
    run = HostRun.objects.create(execution=execution, server_name="h", address="a")

    def stored(arguments: list[None]) -> list[None]:
        return [None] * len(arguments)  # nothing to do: only the flush before it matters

    with OutputWriter(execution.pk) as writer:
        writer.write(run.pk, "stdout", b"before\n")
        writer.call_together(stored, None, after_output_of=run.pk)
        # The writer's at least (a connection an earlier test left open may go with it).
        assert drop_other_connections() >= 1
        writer.write(run.pk, "stdout", b"after\n")
        end = services.HostEnd(run, Status.SUCCEEDED, exit_code=0)
        assert writer.call_together(services.finish_host_runs, end, after_output_of=run.pk)

    # It was the writer's connection that went: its next write failed and was retried.
    assert "writing output of execution" in caplog.text
    assert output(execution) == b"before\nafter\n"
    run.refresh_from_db()
    assert run.status == Status.SUCCEEDED
