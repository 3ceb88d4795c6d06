"""Fan-out to many servers behind one address copes with sshd's default MaxStartups."""

import pytest

from executions.models import Status
from executions.tests.helpers import output, run

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(180)]


def test_fifty_hosts_behind_one_default_sshd_all_succeed(make_server, make_job, sshd_default):
    servers = [make_server(sshd_default, name=f"node-{i:02}") for i in range(50)]
    execution = run(make_job("echo hi", servers, max_parallel=50))
    statuses = {r.server_name: (r.status, r.error) for r in execution.host_runs.all()}
    assert statuses == {s.name: (Status.SUCCEEDED, "") for s in servers}
    assert execution.status == Status.SUCCEEDED
    assert execution.summary == "50 succeeded"
    for server in servers[:5]:
        assert output(execution, server) == b"hi\n"
