"""Deleting a job from the UI: the confirmation says its runs stay; the service records it."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from accounts.models import AuditEvent, Source
from accounts.tests.world import World, build_world
from executions.models import Execution
from jobs.models import Job

pytestmark = [pytest.mark.django_db, pytest.mark.timeout(60)]


@pytest.fixture
def world(sshd) -> World:
    return build_world(sshd)


def test_confirmation_names_the_running_executions_and_keeps_the_history(world):
    client = Client()
    client.force_login(world.users["manager"])
    job, execution = world.ours.job, world.ours.execution
    page = client.get(f"/jobs/{job.pk}/delete/").content.decode()
    assert "Delete job ours-job?" in page
    assert f'<a href="/executions/{execution.pk}/">#{execution.pk}</a>.' in page
    assert "Its 1 run stays in the history under the name ours-job." in page


def test_delete_goes_through_the_service_and_keeps_the_runs(world):
    client = Client()
    client.force_login(world.users["manager"])
    job, execution = world.ours.job, world.ours.execution
    response = client.post(f"/jobs/{job.pk}/delete/")
    assert response.status_code == 302
    assert response["Location"] == reverse("job-list")
    assert not Job.objects.filter(pk=job.pk).exists()
    execution = Execution.objects.get(pk=execution.pk)
    assert (execution.job, execution.job_name) == (None, "ours-job")
    event = AuditEvent.objects.get(action="delete", object_type="jobs.job")
    assert (event.actor, event.team, event.source, event.object_repr) == (
        world.users["manager"],
        world.ours.team,
        Source.UI,
        "ours-job",
    )
