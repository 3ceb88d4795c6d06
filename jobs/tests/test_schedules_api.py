"""Schedules in the API: previews with DST marked, CRUD under the jobs' team rules."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from rest_framework.test import APIClient

from accounts.models import ApiToken, AuditEvent, Role
from jobs.models import Schedule
from jobs.parameters import clean_definitions

pytestmark = [pytest.mark.django_db, pytest.mark.timeout(60)]


def api_as(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {ApiToken.issue(user, 'test')[1]}")
    return client


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


def test_preview_marks_the_runs_a_dst_change_moves(make_member, team):
    api = api_as(make_member(team, Role.VIEWER))
    response = api.post(
        "/api/v1/schedules/preview/",
        {
            "cron": "30 2 * * *",
            "timezone": "Europe/Berlin",
            "after": "2026-03-28T11:00:00Z",
            "count": 3,
        },
        format="json",
    )
    assert response.status_code == 200, response.json()
    assert response.json() == {
        "runs": [
            {
                "utc": "2026-03-29T01:00:00Z",
                "local": "2026-03-29T03:00:00+02:00",
                "dst_change": True,
            },
            {
                "utc": "2026-03-30T00:30:00Z",
                "local": "2026-03-30T02:30:00+02:00",
                "dst_change": False,
            },
            {
                "utc": "2026-03-31T00:30:00Z",
                "local": "2026-03-31T02:30:00+02:00",
                "dst_change": False,
            },
        ]
    }


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"cron": "30 2 * *", "timezone": "UTC"}, "cron", "5 fields"),
        ({"cron": "61 2 * * *", "timezone": "UTC"}, "cron", "Not a valid cron expression"),
        ({"cron": "0 0 30 2 *", "timezone": "UTC"}, "cron", "Not a valid cron expression"),
        ({"cron": "0 3 * * *", "timezone": "Mars/Olympus"}, "timezone", "not a time zone"),
        ({"cron": "0 3 * * *", "timezone": "UTC", "count": 1000}, "count", "100"),
    ],
)
def test_preview_refuses_a_bad_expression_or_zone_clearly(make_member, team, body, field, message):
    response = api_as(make_member(team, Role.VIEWER)).post(
        "/api/v1/schedules/preview/", body, format="json"
    )
    assert response.status_code == 400
    assert message in " ".join(response.json()["errors"][field])


def test_a_manager_schedules_a_job_with_parameters_and_a_secret(make_member, team, job):
    api = api_as(make_member(team, Role.MANAGER))
    response = api.post(
        "/api/v1/schedules/",
        {
            "job": job.pk,
            "name": "nightly",
            "cron": "30 2 * * *",
            "timezone": "Europe/Berlin",
            "parameters": {"MODE": "full", "TOKEN": "s3cret-token-value"},
            "missed_runs": "run_once",
        },
        format="json",
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["parameters"] == {"MODE": "full", "TOKEN": None}
    assert body["next_run_at"] is not None
    assert len(body["next_runs"]) == 5
    schedule = Schedule.objects.get(pk=body["id"])
    assert schedule.secret_parameters == '{"TOKEN": "s3cret-token-value"}'
    assert "s3cret" not in str(AuditEvent.objects.filter(object_type="jobs.schedule").values())

    detail = api.get(f"/api/v1/schedules/{schedule.pk}/").json()
    assert detail["next_runs"][0]["local"].endswith(("+01:00", "+02:00"))
    # Pausing keeps the values, the secret one included.
    paused = api.patch(f"/api/v1/schedules/{schedule.pk}/", {"enabled": False}, format="json")
    assert paused.status_code == 200
    assert paused.json()["next_run_at"] is None
    schedule.refresh_from_db()
    assert schedule.secret_parameters == '{"TOKEN": "s3cret-token-value"}'


def test_a_schedule_with_a_bad_value_is_refused_naming_it(make_member, team, job):
    response = api_as(make_member(team, Role.MANAGER)).post(
        "/api/v1/schedules/",
        {"job": job.pk, "cron": "0 3 * * *", "timezone": "UTC", "parameters": {"MODE": "slow"}},
        format="json",
    )
    assert response.status_code == 400
    assert "MODE" in response.json()["errors"]["parameters"]
    assert not Schedule.objects.exists()


def test_viewers_see_schedules_and_only_managers_change_them(make_member, team, job):
    schedule = Schedule.objects.create(
        job=job, cron="0 3 * * *", timezone="UTC", parameters={"MODE": "quick"}
    )
    for role in (Role.VIEWER, Role.OPERATOR):
        api = api_as(make_member(team, role))
        assert [s["id"] for s in api.get("/api/v1/schedules/").json()["results"]] == [schedule.pk]
        body = {
            "job": job.pk,
            "cron": "0 4 * * *",
            "timezone": "UTC",
            "parameters": {"MODE": "full"},
        }
        assert api.post("/api/v1/schedules/", body, format="json").status_code == 403
        assert api.delete(f"/api/v1/schedules/{schedule.pk}/").status_code == 403


def test_other_teams_schedules_do_not_exist(make_member, other_team, team, job):
    schedule = Schedule.objects.create(job=job, cron="0 3 * * *", timezone="UTC")
    api = api_as(make_member(other_team, Role.MANAGER))
    assert api.get("/api/v1/schedules/").json()["results"] == []
    assert api.get(f"/api/v1/schedules/{schedule.pk}/").status_code == 404
    body = {"job": job.pk, "cron": "0 4 * * *", "timezone": "UTC"}
    response = api.post("/api/v1/schedules/", body, format="json")
    assert response.status_code == 400  # the job does not exist for them
    assert "job" in response.json()["errors"]


def test_a_schedule_stays_with_its_job(make_member, team, job, make_job, make_server):
    other = make_job("true", [make_server(name="two")])
    schedule = Schedule.objects.create(job=job, cron="0 3 * * *", timezone="UTC")
    api = api_as(make_member(team, Role.MANAGER))
    response = api.patch(f"/api/v1/schedules/{schedule.pk}/", {"job": other.pk}, format="json")
    assert response.status_code == 400
    assert "stays with its job" in response.json()["errors"]["job"][0]


def test_a_new_schedule_starts_at_its_next_slot_not_now(make_member, team, job):
    api = api_as(make_member(team, Role.MANAGER))
    body = {"job": job.pk, "cron": "* * * * *", "timezone": "UTC", "parameters": {"MODE": "full"}}
    created = api.post("/api/v1/schedules/", body, format="json").json()
    assert datetime.fromisoformat(created["next_run_at"]) > datetime.now(UTC)
