"""A job's page shows only the runs its viewer may see, also after the job changed team."""

from __future__ import annotations

import pytest

from accounts.tests.world import World, build_world
from executions import services
from executions.models import Trigger

pytestmark = pytest.mark.django_db


@pytest.fixture
def world(sshd) -> World:
    return build_world(sshd)


def history_of(client, job) -> str:
    response = client.get(f"/jobs/{job.pk}/")
    assert response.status_code == 200
    return response.content.decode()


def test_a_job_moved_to_another_team_does_not_bring_the_old_teams_runs(world, client):
    job, old_run = world.ours.job, world.ours.execution
    job.team = world.theirs.team
    job.save()
    job.servers.set([world.theirs.server])
    new_run = services.start_execution(job, trigger=Trigger.SYSTEM)

    client.force_login(world.users["other_team_manager"])
    page = history_of(client, job)
    assert f"#{new_run.pk}<" in page
    assert f"#{old_run.pk}<" not in page

    # The old team keeps its runs: in the executions list, though the job is gone from view.
    client.force_login(world.users["manager"])
    assert f"#{old_run.pk}<" in client.get("/executions/").content.decode()
    assert client.get(f"/jobs/{job.pk}/").status_code == 404
