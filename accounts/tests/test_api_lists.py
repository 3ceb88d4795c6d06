"""API lists are paginated, filtered and ordered; a bad filter is a 400 naming the parameter."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.utils import timezone
from rest_framework.test import APIClient

from accounts import audit
from accounts.models import ApiToken, AuditEvent, Role, Source
from executions import services
from executions.models import Execution, Status, Trigger
from jobs.models import Job
from servers.models import Server, Tag

pytestmark = pytest.mark.django_db


@pytest.fixture
def manager(make_member, team) -> User:
    return make_member(team, Role.MANAGER)


@pytest.fixture
def api(manager: User) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {ApiToken.issue(manager, 'lists')[1]}")
    return client


def ids(response) -> list[int]:
    assert response.status_code == 200, response.json()
    return [item["id"] for item in response.json()["results"]]


def server(team, name: str, **fields: object) -> Server:
    return Server.objects.create(
        team=team, name=name, host=f"{name}.example", username="u", **fields
    )


def test_lists_are_paginated(api, team):
    servers = [server(team, f"s{i}") for i in range(5)]
    first = api.get("/api/v1/servers/", {"page_size": 2}).json()
    assert first["count"] == 5
    assert [item["id"] for item in first["results"]] == [s.pk for s in servers[:2]]
    assert first["previous"] is None
    assert first["next"].endswith("/api/v1/servers/?page=2&page_size=2")
    last = api.get("/api/v1/servers/", {"page_size": 2, "page": 3}).json()
    assert [item["id"] for item in last["results"]] == [servers[4].pk]
    assert last["next"] is None

    beyond = api.get("/api/v1/servers/", {"page": 4, "page_size": 2})
    assert beyond.status_code == 404
    assert beyond.json() == {"detail": "Invalid page."}
    assert api.get("/api/v1/servers/", {"page": "abc"}).status_code == 404
    # Too large a page size is capped rather than refused.
    assert len(api.get("/api/v1/servers/", {"page_size": 10_000}).json()["results"]) == 5


def test_servers_filter_and_order(api, team, other_team):
    web = Tag.objects.create(name="web")
    alpha = server(team, "alpha", auth_method="password")
    beta = server(team, "beta")
    beta.tags.set([web])
    server(other_team, "gamma")  # never visible to this manager
    assert ids(api.get("/api/v1/servers/")) == [alpha.pk, beta.pk]
    assert ids(api.get("/api/v1/servers/", {"ordering": "-name"})) == [beta.pk, alpha.pk]
    assert ids(api.get("/api/v1/servers/", {"name": "ALP"})) == [alpha.pk]
    assert ids(api.get("/api/v1/servers/", {"host": "beta.ex"})) == [beta.pk]
    assert ids(api.get("/api/v1/servers/", {"tag": "web"})) == [beta.pk]
    assert ids(api.get("/api/v1/servers/", {"auth_method": "password"})) == [alpha.pk]
    assert ids(api.get("/api/v1/servers/", {"team": team.pk})) == [alpha.pk, beta.pk]
    # A team the caller cannot see is refused like an id that does not exist (no tell).
    assert api.get("/api/v1/servers/", {"team": other_team.pk}).status_code == 400


def test_jobs_filter_and_order(api, team):
    target = server(team, "target")
    deploy = Job.objects.create(team=team, name="deploy", script="true")
    deploy.servers.set([target])
    backup = Job.objects.create(team=team, name="backup", script="true", enabled=False)
    assert ids(api.get("/api/v1/jobs/")) == [backup.pk, deploy.pk]
    assert ids(api.get("/api/v1/jobs/", {"ordering": "-created_at"})) == [backup.pk, deploy.pk]
    assert ids(api.get("/api/v1/jobs/", {"ordering": "created_at"})) == [deploy.pk, backup.pk]
    assert ids(api.get("/api/v1/jobs/", {"server": target.pk})) == [deploy.pk]
    assert ids(api.get("/api/v1/jobs/", {"enabled": "false"})) == [backup.pk]
    assert ids(api.get("/api/v1/jobs/", {"name": "dep"})) == [deploy.pk]


@pytest.fixture
def executions(team, manager, django_user_model):
    """Three executions: different jobs, servers, statuses, triggers, people and days."""
    bob = django_user_model.objects.create_user("bob")
    one, two = server(team, "one"), server(team, "two")
    first = Job.objects.create(team=team, name="first", script="true")
    second = Job.objects.create(team=team, name="second", script="true")
    a = services.start_execution(first, trigger=Trigger.API, triggered_by=manager, servers=[one])
    b = services.start_execution(second, trigger=Trigger.ADMIN, triggered_by=bob, servers=[two])
    c = services.start_execution(first, trigger=Trigger.SCHEDULE, servers=[one, two])
    now = timezone.now()
    Execution.objects.filter(pk=a.pk).update(
        status=Status.SUCCEEDED, created_at=now - timedelta(days=3)
    )
    Execution.objects.filter(pk=b.pk).update(
        status=Status.FAILED, created_at=now - timedelta(days=2)
    )
    Execution.objects.filter(pk=c.pk).update(created_at=now - timedelta(days=1))
    return {"a": a, "b": b, "c": c, "first": first, "one": one, "two": two, "now": now}


def test_executions_filter_by_status_job_server_team_trigger_and_person(
    api, executions, team, other_team, manager
):
    a, b, c = executions["a"].pk, executions["b"].pk, executions["c"].pk

    def get(**params: object) -> list[int]:
        return ids(api.get("/api/v1/executions/", params))

    assert get() == [c, b, a]  # newest first
    assert get(status="failed") == [b]
    assert ids(api.get("/api/v1/executions/?status=failed&status=queued")) == [c, b]
    assert get(job=executions["first"].pk) == [c, a]
    assert get(server=executions["two"].pk) == [c, b]
    assert get(team=team.pk) == [c, b, a]
    assert api.get("/api/v1/executions/", {"team": other_team.pk}).status_code == 400
    assert get(trigger="schedule") == [c]
    assert get(triggered_by=manager.username) == [a]
    assert get(triggered_by="bob") == [b]
    assert get(ordering="created_at") == [a, b, c]
    assert get(ordering="status") == [b, c, a]


def test_executions_filter_by_time_range(api, executions):
    a, b, c, now = (executions[k] for k in ("a", "b", "c", "now"))

    def get(**params: object) -> list[int]:
        return ids(api.get("/api/v1/executions/", params))

    after = (now - timedelta(days=2, hours=1)).isoformat()
    before = (now - timedelta(days=1, hours=1)).isoformat()
    assert get(created_after=after) == [c.pk, b.pk]
    assert get(created_before=before) == [b.pk, a.pk]
    assert get(created_after=after, created_before=before) == [b.pk]
    # The bound is inclusive after, exclusive before.
    b.refresh_from_db()
    assert get(created_after=b.created_at.isoformat(), created_before=before) == [b.pk]
    assert get(created_before=b.created_at.isoformat(), created_after=after) == []


def test_audit_trail_filters(api, team, manager):
    start = timezone.now()
    audit.record("change", team, actor=manager, source=Source.API)
    audit.record("run", team, actor=None, source=Source.SCHEDULE)
    AuditEvent.objects.filter(action="run").update(at=start + timedelta(hours=1))

    def get(**params: str) -> list[str]:
        return [e["action"] for e in api.get("/api/v1/audit/", params).json()["results"]]

    assert get() == ["run", "change"]
    assert get(action="change") == ["change"]
    assert get(source="schedule") == ["run"]
    assert get(actor=manager.username) == ["change"]
    assert get(at_after=(start + timedelta(minutes=30)).isoformat()) == ["run"]
    assert get(at_before=(start + timedelta(minutes=30)).isoformat()) == ["change"]
    assert get(ordering="at") == ["change", "run"]
    assert get(team=team.pk) == ["run", "change"]


@pytest.mark.parametrize(
    ("url", "params", "field"),
    [
        ("/api/v1/executions/", {"status": "bogus"}, "status"),
        ("/api/v1/executions/", {"job": "abc"}, "job"),
        ("/api/v1/executions/", {"server": "abc"}, "server"),
        ("/api/v1/executions/", {"team": "abc"}, "team"),
        ("/api/v1/executions/", {"trigger": "carrier-pigeon"}, "trigger"),
        ("/api/v1/executions/", {"created_after": "yesterday"}, "created_after"),
        ("/api/v1/executions/", {"created_before": "2024-13-45"}, "created_before"),
        ("/api/v1/servers/", {"auth_method": "telepathy"}, "auth_method"),
        ("/api/v1/jobs/", {"server": "x"}, "server"),
        ("/api/v1/audit/", {"at_after": "soon"}, "at_after"),
        ("/api/v1/audit/", {"source": "nowhere"}, "source"),
    ],
)
def test_bad_filter_values_are_a_400_naming_the_parameter(api, url, params, field):
    response = api.get(url, params)
    assert response.status_code == 400
    body = response.json()
    assert body["detail"] == "The request is not valid."
    assert list(body["errors"]) == [field]
