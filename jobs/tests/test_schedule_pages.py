"""A job's schedules in the web UI: listed with their next runs, edited by managers only."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.test import Client

from accounts.models import Role
from executions.models import Execution, Status
from jobs import scheduler
from jobs.models import Schedule
from jobs.parameters import clean_definitions

pytestmark = pytest.mark.django_db


@pytest.fixture
def job(make_server, make_job):
    job = make_job("echo $MODE", [make_server()])
    job.parameters = clean_definitions(
        [
            {"name": "MODE", "type": "choice", "choices": ["full", "quick"], "required": True},
            {"name": "TOKEN", "type": "secret"},
        ]
    )
    job.save()
    return job


def client_as(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


FORM = {
    "name": "nightly",
    "cron": "30 2 * * *",
    "timezone": "Europe/Berlin",
    "enabled": "on",
    "missed_runs": "skip",
    "start_deadline_seconds": "3600",
    "MODE": "full",
    "TOKEN": "tok-123-secret",
}


def test_a_manager_adds_a_schedule_and_sees_its_next_runs(make_member, team, job):
    client = client_as(make_member(team, Role.MANAGER))
    page = client.get(f"/jobs/{job.pk}/")
    assert b"Add schedule" in page.content
    response = client.post(f"/jobs/{job.pk}/schedules/new/", FORM)
    assert response.status_code == 302, response.content.decode()[-3000:]
    schedule = Schedule.objects.get()
    assert (schedule.cron, schedule.parameters) == ("30 2 * * *", {"MODE": "full"})
    assert schedule.secret_parameters == '{"TOKEN": "tok-123-secret"}'
    page = client.get(f"/jobs/{job.pk}/").content.decode()
    assert "30 2 * * *" in page
    assert "Europe/Berlin" in page
    assert page.count("UTC)") == 3  # three next runs, each with its UTC time
    # In the schedule's zone (the viewer's is UTC): 02:30 CET or CEST, 00:30 or 01:30 UTC.
    assert page.count(" 02:30 CE") == 3

    # Editing without retyping the secret keeps it.
    edit = client.post(
        f"/jobs/schedules/{schedule.pk}/edit/", {**FORM, "TOKEN": "", "MODE": "quick"}
    )
    assert edit.status_code == 302
    schedule.refresh_from_db()
    assert schedule.parameters == {"MODE": "quick"}
    assert schedule.secret_parameters == '{"TOKEN": "tok-123-secret"}'


def test_a_bad_value_or_expression_is_shown_at_its_input(make_member, team, job):
    client = client_as(make_member(team, Role.MANAGER))
    response = client.post(
        f"/jobs/{job.pk}/schedules/new/", {**FORM, "cron": "30 25 * * *", "MODE": "slow"}
    )
    assert response.status_code == 200
    page = response.content.decode()
    assert "Not a valid cron expression" in page
    assert not Schedule.objects.exists()
    response = client.post(f"/jobs/{job.pk}/schedules/new/", {**FORM, "MODE": "slow"})
    assert "slow" in response.content.decode()
    assert not Schedule.objects.exists()


def test_pause_and_resume(make_member, team, job):
    schedule = Schedule.objects.create(job=job, cron="0 3 * * *", timezone="UTC")
    client = client_as(make_member(team, Role.MANAGER))
    client.post(f"/jobs/schedules/{schedule.pk}/toggle/")
    schedule.refresh_from_db()
    assert (schedule.enabled, schedule.next_run_at) == (False, None)
    assert "paused" in client.get(f"/jobs/{job.pk}/").content.decode()
    client.post(f"/jobs/schedules/{schedule.pk}/toggle/")
    schedule.refresh_from_db()
    assert schedule.enabled
    assert schedule.next_run_at is not None


def test_operators_see_schedules_but_cannot_change_them(make_member, team, job):
    schedule = Schedule.objects.create(job=job, cron="0 3 * * *", timezone="UTC")
    client = client_as(make_member(team, Role.OPERATOR))
    page = client.get(f"/jobs/{job.pk}/").content.decode()
    assert "0 3 * * *" in page
    assert "Add schedule" not in page
    assert "Pause" not in page
    assert client.get(f"/jobs/{job.pk}/schedules/new/").status_code == 403
    assert client.post(f"/jobs/schedules/{schedule.pk}/toggle/").status_code == 403
    assert client.post(f"/jobs/schedules/{schedule.pk}/delete/").status_code == 403
    assert Schedule.objects.get().enabled


def test_outsiders_get_404(make_member, other_team, job):
    schedule = Schedule.objects.create(job=job, cron="0 3 * * *", timezone="UTC")
    client = client_as(make_member(other_team, Role.MANAGER))
    assert client.get(f"/jobs/schedules/{schedule.pk}/edit/").status_code == 404
    assert client.get(f"/jobs/{job.pk}/schedules/new/").status_code == 404


def test_a_scheduled_runs_page_names_its_schedule_and_slot(make_member, team, job):
    schedule = Schedule.objects.create(
        job=job, cron="0 3 * * *", timezone="UTC", name="nightly", parameters={"MODE": "full"}
    )
    Schedule.objects.filter(pk=schedule.pk).update(next_run_at=datetime(2026, 5, 1, 3, tzinfo=UTC))
    [execution_id] = scheduler.fire_due_schedules(now=datetime(2026, 5, 1, 3, 0, 20, tzinfo=UTC))
    assert Execution.objects.get(pk=execution_id).status == Status.QUEUED
    client = client_as(make_member(team, Role.VIEWER))
    page = client.get(f"/executions/{execution_id}/").content.decode()
    assert 'id="execution-schedule"' in page
    assert "nightly" in page
    assert "2026-05-01 03:00" in page


def test_delete(make_member, team, job):
    schedule = Schedule.objects.create(job=job, cron="0 3 * * *", timezone="UTC")
    client = client_as(make_member(team, Role.MANAGER))
    assert client.get(f"/jobs/schedules/{schedule.pk}/delete/").status_code == 200
    assert client.post(f"/jobs/schedules/{schedule.pk}/delete/").status_code == 302
    assert not Schedule.objects.exists()
