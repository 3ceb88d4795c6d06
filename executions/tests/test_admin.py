"""Running, watching and cancelling from the admin goes through the service layer."""

import pytest
from django.urls import reverse

from executions import runner
from executions.models import Execution, Status, Trigger

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(60)]


@pytest.fixture
def admin_client(client, superuser):
    client.force_login(superuser)
    return client


def test_run_action_starts_an_execution_and_the_page_shows_its_log(
    admin_client, make_server, make_job, superuser, queued
):
    job = make_job("echo from-admin; echo oops >&2", [make_server(name="alpha")])
    admin_client.post(
        reverse("admin:jobs_job_changelist"), {"action": "run_job", "_selected_action": [job.pk]}
    )
    execution = Execution.objects.get()
    assert queued == [execution.pk]
    assert (execution.trigger, execution.triggered_by) == (Trigger.ADMIN, superuser)
    runner.run_execution(execution.pk)

    page = admin_client.get(reverse("admin:executions_execution_change", args=[execution.pk]))
    html = page.content.decode()
    assert "from-admin" in html
    assert "oops" in html
    assert "alpha" in html
    listing = admin_client.get(reverse("admin:executions_execution_changelist")).content.decode()
    assert "1 succeeded" in listing


def test_cancel_action_cancels_a_queued_execution(admin_client, make_server, make_job):
    job = make_job("echo never", [make_server()])
    admin_client.post(
        reverse("admin:jobs_job_changelist"), {"action": "run_job", "_selected_action": [job.pk]}
    )
    execution = Execution.objects.get()
    admin_client.post(
        reverse("admin:executions_execution_changelist"),
        {"action": "cancel", "_selected_action": [execution.pk]},
    )
    execution.refresh_from_db()
    assert execution.status == Status.CANCELLED
    assert execution.cancel_requested_by is not None


def test_every_admin_page_renders(admin_client, make_server, make_job):
    job = make_job("echo x", [make_server()])
    runner_execution = admin_client.post(
        reverse("admin:jobs_job_changelist"), {"action": "run_job", "_selected_action": [job.pk]}
    )
    assert runner_execution.status_code == 302
    for name in (
        "servers_server",
        "servers_tag",
        "jobs_job",
        "executions_execution",
        "executions_hostrun",
        "executions_logchunk",
    ):
        assert admin_client.get(reverse(f"admin:{name}_changelist")).status_code == 200
    assert admin_client.get(reverse("admin:servers_server_add")).status_code == 200
    assert admin_client.get(reverse("admin:jobs_job_add")).status_code == 200
    assert admin_client.get(reverse("admin:jobs_job_change", args=[job.pk])).status_code == 200
