"""The API takes tags by name as the UI's form does: one rule for a name, new names created."""

from __future__ import annotations

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from accounts.models import ApiToken, AuditEvent, Role
from servers.models import Server, Tag

pytestmark = pytest.mark.django_db


@pytest.fixture
def api(make_member, team) -> APIClient:
    client = APIClient()
    user = make_member(team, Role.MANAGER)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {ApiToken.issue(user, 'tags')[1]}")
    return client


def body(team, **changes: object) -> dict[str, object]:
    return {
        "team": team.pk,
        "name": "web-1",
        "host": "web-1.example.test",
        "username": "u",
    } | changes


def test_new_tag_names_become_tags(api, team):
    Tag.objects.create(name="web")
    response = api.post(
        "/api/v1/servers/", body(team, tags=["web", "eu-west", "web"]), format="json"
    )
    assert response.status_code == 201, response.content
    assert response.json()["tags"] == ["eu-west", "web"]
    server = Server.objects.get()
    assert [tag.name for tag in server.tags.all()] == ["eu-west", "web"]
    assert Tag.objects.count() == 2

    response = api.patch(f"/api/v1/servers/{server.pk}/", {"tags": ["db"]}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["tags"] == ["db"]
    assert AuditEvent.objects.filter(action="change").get().details == {"fields": ["tags"]}


def test_a_tag_of_another_team_is_taken_like_a_new_name(api, team, other_team):
    theirs = Server.objects.create(team=other_team, name="theirs", host="t", username="u")
    theirs.tags.create(name="payroll-db")
    response = api.post("/api/v1/servers/", body(team, tags=["payroll-db"]), format="json")
    assert response.status_code == 201, response.content
    assert Server.objects.get(name="web-1").tags.get() == theirs.tags.get()


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("prod/eu", "The tag 'prod/eu' may only have letters, digits, - and _."),
        ("x" * 51, f"The tag {'x' * 51!r} is too long."),
    ],
)
def test_the_api_refuses_a_tag_name_as_the_ui_form_does(
    api, client, make_member, team, name, message
):
    response = api.post("/api/v1/servers/", body(team, tags=["web", name]), format="json")
    assert response.status_code == 400
    assert response.json()["errors"] == {"tags": [message]}

    client.force_login(make_member(team, Role.MANAGER, username="ui"))
    form = body(team, port=22, auth_method="key", tags=f"web, {name}")
    page = client.post(reverse("server-add"), form)
    assert page.context["form"].errors["tags"] == [message]
    assert not Server.objects.exists()
    assert not Tag.objects.exists()
