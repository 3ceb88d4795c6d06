"""Executions are found by a word in their output (`q`), in the API as in the UI: one filter.

The UI's status select offers "any" as an empty value, which selects every status.
"""

from __future__ import annotations

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.models import ApiToken, Role
from executions import services
from executions.models import Execution, LogChunk, Trigger
from jobs.models import Job

pytestmark = pytest.mark.django_db


@pytest.fixture
def manager(make_member, team):
    return make_member(team, Role.MANAGER)


@pytest.fixture
def api(manager) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {ApiToken.issue(manager, 'search')[1]}")
    return client


def with_output(job: Job, text: str, by) -> Execution:
    execution = services.start_execution(job, trigger=Trigger.API, triggered_by=by)
    LogChunk.objects.create(
        execution=execution,
        host_run=execution.host_runs.get(),
        seq=0,
        stream=LogChunk.Stream.STDOUT,
        data=text.encode(),
        created_at=timezone.now(),
    )
    return execution


@pytest.fixture
def found_and_not(team, manager, make_server) -> tuple[Execution, Execution]:
    job = Job.objects.create(team=team, name="deploy", script="true")
    job.servers.set([make_server()])
    return (
        with_output(job, "deployed release needle-42 to web-1\n", manager),
        with_output(job, "nothing to see\n", manager),
    )


def test_the_api_finds_executions_by_text_in_their_output(api, found_and_not) -> None:
    found, _ = found_and_not
    response = api.get("/api/v1/executions/", {"q": "needle-42"})
    assert response.status_code == 200, response.json()
    assert [item["id"] for item in response.json()["results"]] == [found.pk]
    everything = api.get("/api/v1/executions/", {"q": ""}).json()["results"]
    assert len(everything) == 2


def test_the_ui_and_the_api_search_alike(client, manager, found_and_not) -> None:
    found, _ = found_and_not
    client.force_login(manager)
    response = client.get("/executions/", {"q": "needle-42"})
    assert list(response.context["page"]) == [found]
    assert 'value="needle-42"' in response.content.decode()


def test_the_output_search_is_in_the_api_schema(api) -> None:
    schema = api.get("/api/v1/schema/", HTTP_ACCEPT="application/json").json()
    parameters = schema["paths"]["/api/v1/executions/"]["get"]["parameters"]
    assert "q" in {parameter["name"] for parameter in parameters}


@pytest.mark.parametrize("status", [[""], ["", "queued"]])
def test_status_any_is_no_condition_and_no_error(client, manager, found_and_not, status):
    client.force_login(manager)
    response = client.get("/executions/", {"status": status, "q": "needle-42"})
    assert response.context["filters"].errors == {}
    assert "Select a valid choice" not in response.content.decode()
    assert list(response.context["page"]) == [found_and_not[0]]
