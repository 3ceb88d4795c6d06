"""A job cannot ask for more servers at once than the installation runs, however it is saved."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from rest_framework.test import APIClient

from jobs.models import Job

pytestmark = [pytest.mark.django_db, pytest.mark.timeout(60)]


def refusal(limit: int) -> str:
    return (
        f"At most {limit} servers can run at the same time "
        "(the EXECUTION_MAX_PARALLEL setting of this installation)."
    )


@pytest.fixture
def limit(settings) -> int:
    settings.EXECUTION_MAX_PARALLEL = 20
    return 20


def test_model_validation_allows_the_limit_and_refuses_more(team, limit):
    Job(team=team, name="at-limit", script="true", max_parallel=limit).full_clean()
    with pytest.raises(ValidationError) as refused:
        Job(team=team, name="above", script="true", max_parallel=limit + 1).full_clean()
    assert refused.value.message_dict == {"max_parallel": [refusal(limit)]}


def test_the_limit_is_the_setting_of_today(team, settings):
    job = Job(team=team, name="j", script="true", max_parallel=100)
    with pytest.raises(ValidationError):
        job.full_clean()
    settings.EXECUTION_MAX_PARALLEL = 100
    job.full_clean()


def test_api_refuses_more_than_the_limit(superuser, team, limit):
    client = APIClient()
    client.force_authenticate(superuser)
    body = {"team": team.pk, "name": "j", "script": "true", "max_parallel": 10**9}
    created = client.post("/api/v1/jobs/", body, format="json")
    assert created.status_code == 400
    assert created.json()["errors"] == {"max_parallel": [refusal(limit)]}

    job = client.post("/api/v1/jobs/", {**body, "max_parallel": limit}, format="json")
    assert job.status_code == 201
    raised = client.patch(
        f"/api/v1/jobs/{job.json()['id']}/", {"max_parallel": 10**9}, format="json"
    )
    assert raised.status_code == 400
    assert raised.json()["errors"] == {"max_parallel": [refusal(limit)]}
    assert Job.objects.get().max_parallel == limit


@pytest.mark.parametrize("path", ["/jobs/new/", "/admin/jobs/job/add/"], ids=["ui", "admin"])
def test_ui_and_admin_forms_refuse_more_than_the_limit(client, superuser, team, limit, path):
    client.force_login(superuser)
    form = {
        "team": team.pk,
        "name": "j",
        "interpreter": "/bin/bash",
        "script": "true",
        "enabled": "on",
        "max_parallel": str(10**9),
    }
    response = client.post(path, form)
    assert response.status_code == 200  # the form again, with the reason
    assert refusal(limit) in response.content.decode()
    assert not Job.objects.exists()
