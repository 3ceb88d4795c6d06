"""A run keeps its output in the order the server sent it, from SSH to the stored chunks and
the raw download; a job may run under a terminal, which gives one stream in written order."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from accounts.models import ApiToken
from executions import runner
from executions.models import Execution, LogChunk, Status
from executions.tests.helpers import run, stored_lines
from servers.tests.test_output_order import ALTERNATING, assert_arrival_order

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]


@pytest.fixture
def api(superuser) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {ApiToken.issue(superuser, 'order')[1]}")
    return client


def raw_log(api: APIClient, execution: Execution) -> bytes:
    response = api.get(f"/api/v1/executions/{execution.pk}/log/raw/")
    assert response.status_code == 200
    return b"".join(response.streaming_content)


def test_interleaved_output_is_stored_and_downloaded_in_arrival_order(
    api, make_server, make_job, prompt_sshd, arrivals
):
    job = make_job(ALTERNATING, [make_server(prompt_sshd)], interpreter="/usr/bin/python3")
    for _run in range(3):
        arrivals.clear()
        execution = run(job)
        assert execution.status == Status.SUCCEEDED
        lines = stored_lines(execution)
        assert_arrival_order(lines, arrivals.lines())
        # However the server sent them, the download is the stored order.
        assert raw_log(api, execution) == "".join(f"{line}\n" for _, line in lines).encode()


def test_job_that_uses_a_terminal_stores_one_stream_in_written_order(
    api, superuser, team, make_server
):
    server = make_server()
    script = "test -t 1 && echo tty\nfor i in $(seq 1 100); do echo $i-out; echo $i-err >&2; done\n"
    created = api.post(
        "/api/v1/jobs/",
        {
            "team": team.pk,
            "name": "in a terminal",
            "script": script,
            "servers": [server.pk],
            "use_terminal": True,
        },
        format="json",
    )
    assert created.status_code == 201, created.json()
    assert created.json()["use_terminal"] is True
    started = api.post(f"/api/v1/jobs/{created.json()['id']}/run/", {}, format="json")
    assert started.status_code == 201
    assert started.json()["use_terminal"] is True
    # What ran is the snapshot: turning the option off now changes nothing for this run.
    api.patch(f"/api/v1/jobs/{created.json()['id']}/", {"use_terminal": False}, format="json")
    runner.run_execution(started.json()["id"])

    execution = Execution.objects.get(pk=started.json()["id"])
    assert execution.status == Status.SUCCEEDED
    lines = "".join(f"{i}-out\r\n{i}-err\r\n" for i in range(1, 101))
    assert raw_log(api, execution) == f"tty\r\n{lines}".encode()
    streams = set(LogChunk.objects.filter(execution=execution).values_list("stream", flat=True))
    assert streams == {LogChunk.Stream.STDOUT}


def test_job_form_saves_the_terminal_option(client, superuser, team, make_server, make_job):
    job = make_job("true", [make_server()])
    client.force_login(superuser)
    form = {
        "team": team.pk,
        "name": job.name,
        "interpreter": "/bin/bash",
        "script": "true",
        "servers": [server.pk for server in job.servers.all()],
        "max_parallel": 10,
        "enabled": "on",
        "use_terminal": "on",
    }
    response = client.post(f"/jobs/{job.pk}/edit/", form)
    assert response.status_code == 302
    job.refresh_from_db()
    assert job.use_terminal is True
