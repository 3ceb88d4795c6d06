"""/api/v1/ lists the API's resources with their URLs, so a newcomer can start from there."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from accounts.models import ApiToken, Role

pytestmark = pytest.mark.django_db

RESOURCES = [
    "teams",
    "audit",
    "tokens",
    "servers",
    "jobs",
    "secret-variables",
    "schedules",
    "webhooks",
    "webhook-deliveries",
    "executions",
    "notification-channels",
    "notification-rules",
    "notification-deliveries",
]


def test_the_api_root_lists_every_resource_with_its_url() -> None:
    response = APIClient().get("/api/v1/")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    listed = response.json()
    assert set(listed) == {*RESOURCES, "schema", "docs"}
    for name in RESOURCES:
        assert listed[name] == f"http://testserver/api/v1/{name}/"
    assert listed["docs"] == "http://testserver/api/v1/docs/"


def test_each_listed_url_answers(make_member, team) -> None:
    client = APIClient()
    token = ApiToken.issue(make_member(team, Role.MANAGER), "root")[1]
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    for name, url in client.get("/api/v1/").json().items():
        assert client.get(url).status_code == 200, name


def test_the_root_is_not_an_operation_of_the_schema() -> None:
    schema = APIClient().get("/api/v1/schema/", HTTP_ACCEPT="application/json").json()
    assert "/api/v1/" not in schema["paths"]
