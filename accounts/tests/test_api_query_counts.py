"""Every list endpoint runs the same number of queries for 2 objects as for 20."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from accounts import audit
from accounts.models import ApiToken, Membership, Role, Source, Team
from accounts.roles import role_group
from executions import services
from executions.models import Trigger
from jobs.models import Job, SecretVariable, Webhook, WebhookDelivery
from servers.models import Server, Tag

pytestmark = pytest.mark.django_db


@pytest.fixture
def manager(make_member, team) -> User:
    return make_member(team, Role.MANAGER)


def api_as(user: User) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {ApiToken.issue(user, 'counts')[1]}")
    client.get("/api/v1/teams/")  # the token's first use of the minute records it: not counted
    return client


def make_servers(team: Team, manager: User, n: int) -> list[Server]:
    tags = [Tag.objects.get_or_create(name=name)[0] for name in ("web", "db")]
    servers = []
    for _ in range(n):
        server = Server.objects.create(
            team=team,
            name=f"s{Server.objects.count()}",
            host="127.0.0.1",
            username="u",
            host_key_fingerprint="SHA256:x",
            host_key_trusted_by=manager,
        )
        server.tags.set(tags)
        servers.append(server)
    return servers


def make_jobs(team: Team, manager: User, n: int) -> list[Job]:
    servers = make_servers(team, manager, 2)
    jobs = []
    for _ in range(n):
        job = Job.objects.create(team=team, name=f"j{Job.objects.count()}", script="true")
        job.servers.set(servers)
        jobs.append(job)
    return jobs


def make_secret_variables(team: Team, manager: User, n: int) -> None:
    for _ in range(n):
        name = f"SECRET_{SecretVariable.objects.count()}"
        SecretVariable.objects.create(team=team, name=name, value="v" * 8)


def make_webhooks(team: Team, manager: User, n: int) -> list[Webhook]:
    (job,) = make_jobs(team, manager, 1)
    webhooks = []
    for _ in range(n):
        key = f"k{Webhook.objects.count()}"
        webhooks.append(Webhook.objects.create(job=job, name=key, key=key))
    return webhooks


def make_webhook_deliveries(team: Team, manager: User, n: int) -> None:
    for webhook in make_webhooks(team, manager, n):
        WebhookDelivery.objects.create(webhook=webhook, delivery_id="d", status_code=401)


def make_executions(team: Team, manager: User, n: int) -> None:
    (job,) = make_jobs(team, manager, 1)
    for _ in range(n):
        execution = services.start_execution(job, trigger=Trigger.API, triggered_by=manager)
        services.cancel_execution(execution, by=manager)


def make_teams(team: Team, manager: User, n: int) -> None:
    for _ in range(n):
        name = f"t{Team.objects.count()}"
        Membership.objects.create(
            team=Team.objects.create(name=name), user=manager, role=role_group(Role.VIEWER)
        )


def make_audit_events(team: Team, manager: User, n: int) -> None:
    for _ in range(n):
        audit.record("change", team, actor=manager, source=Source.API, details={"x": 1})


# What each list runs, whatever its length. Every list first authenticates (the token and its
# user in one query) and, for anyone but a superuser, reads the caller's team roles (one
# query); paginated lists then count.
QUERIES: dict[str, tuple[Callable[[Team, User, int], object], list[str]]] = {
    "/api/v1/servers/": (
        make_servers,
        ["token and user", "team roles", "count", "servers, teams, trusted-by users", "tags"],
    ),
    "/api/v1/jobs/": (
        make_jobs,
        [
            "token and user",
            "team roles",
            "count",
            "jobs and teams",
            "target servers",
            "target tags",
            "secret variables",
            "chain links",
        ],
    ),
    "/api/v1/secret-variables/": (
        make_secret_variables,
        ["token and user", "team roles", "count", "secret variables and teams"],
    ),
    "/api/v1/webhooks/": (
        make_webhooks,
        ["token and user", "team roles", "count", "webhooks and jobs"],
    ),
    "/api/v1/webhook-deliveries/": (
        make_webhook_deliveries,
        ["token and user", "team roles", "count", "the newest deliveries of each webhook"],
    ),
    "/api/v1/executions/": (
        make_executions,
        [
            "token and user",
            "team roles",
            "count",
            "executions, teams, jobs, triggering and cancelling users",
            "host runs",
            "chained runs",
        ],
    ),
    "/api/v1/teams/": (
        make_teams,
        ["token and user", "team roles", "count", "teams", "the caller's memberships and roles"],
    ),
    "/api/v1/audit/": (
        make_audit_events,
        ["token and user", "team roles", "count", "events"],
    ),
}


@pytest.mark.parametrize("persona", ["manager", "superuser"])
@pytest.mark.parametrize("url", QUERIES)
def test_list_runs_a_constant_number_of_queries(manager, superuser, team, url, persona):
    make, expected = QUERIES[url]
    if persona == "superuser":
        expected = [query for query in expected if query != "team roles"]
    api = api_as(manager if persona == "manager" else superuser)
    counts, total = [], 0
    for more in (2, 18):  # 2 objects, then 20
        make(team, manager, more)
        total += more
        with CaptureQueriesContext(connection) as queries:
            response = api.get(url, {"page_size": 100})
        assert response.status_code == 200
        assert len(response.json()["results"]) >= total
        counts.append([query["sql"] for query in queries.captured_queries])
    assert len(counts[0]) == len(counts[1]), "\n".join(counts[1])
    assert len(counts[1]) == len(expected), "\n".join(counts[1])
