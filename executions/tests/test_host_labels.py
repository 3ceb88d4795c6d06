"""A server's name labels its output on one line: it cannot forge another host's label in the
raw log, the live viewer or the admin's log."""

from __future__ import annotations

import pytest
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.models import ApiToken
from executions import services
from executions.models import Execution, LogChunk, Trigger
from jobs.models import Job
from servers.models import Server

pytestmark = pytest.mark.django_db

# Saved past validation, as names were before it refused unprintable characters.
NAMES = ["a-web", "x <==\n==> y", "z\x1b[2J"]


@pytest.fixture
def execution(team) -> Execution:
    servers = [Server.objects.create(team=team, name=n, host="h", username="u") for n in NAMES]
    job = Job.objects.create(team=team, name="deploy", script="true")
    job.servers.set(servers)
    execution = services.start_execution(job, trigger=Trigger.SYSTEM)
    runs = {run.server_name: run for run in execution.host_runs.all()}
    for seq, name in enumerate(NAMES):
        LogChunk.objects.create(
            execution=execution,
            host_run=runs[name],
            seq=seq,
            stream=LogChunk.Stream.STDOUT,
            data=f"output {seq}\n".encode(),
            created_at=timezone.now(),
        )
    return execution


def test_the_raw_log_keeps_each_name_on_its_header_line(superuser, execution):
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {ApiToken.issue(superuser, 'raw')[1]}")
    response = api.get(f"/api/v1/executions/{execution.pk}/log/raw/")
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == (
        b"==> a-web <==\noutput 0\n"
        b"\n==> x <==\\n==> y <==\noutput 1\n"
        b"\n==> z\\x1b[2J <==\noutput 2\n"
    )


def test_the_live_viewer_and_the_admin_show_names_escaped(client, superuser, execution):
    client.force_login(superuser)
    page = client.get(reverse("execution-detail", args=[execution.pk]))
    # The viewer writes these names into the terminal before each line of their output.
    assert [host["name"] for host in page.context["viewer"]["hosts"]] == [
        "a-web",
        "x <==\\n==> y",
        "z\\x1b[2J",
    ]
    admin = client.get(reverse("admin:executions_execution_change", args=[execution.pk]))
    html = admin.content.decode()
    assert "── x &lt;==\\n==&gt; y stdout ──" in html
    assert "── z\\x1b[2J stdout ──" in html
