"""Small ways to learn or gain more than a role allows, closed."""

from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.utils import timezone

from accounts.tests.world import World, build_world

pytestmark = pytest.mark.django_db


@pytest.fixture
def world(sshd) -> World:
    return build_world(sshd)


@pytest.mark.parametrize(
    "url", ["/api/v1/executions/", "/api/v1/servers/", "/api/v1/jobs/", "/api/v1/audit/"]
)
def test_another_teams_id_in_a_filter_looks_like_an_id_that_does_not_exist(world, url):
    client = world.client("manager")
    theirs = client.get(url, {"team": world.theirs.team.pk})
    nowhere = client.get(url, {"team": 987654})
    assert theirs.status_code == nowhere.status_code == 400
    assert theirs.json()["errors"].keys() == nowhere.json()["errors"].keys() == {"team"}
    assert client.get(url, {"team": world.ours.team.pk}).status_code == 200


def test_the_ui_filters_answer_the_same(world, client):
    client.force_login(world.users["manager"])
    other = client.get("/executions/", {"job": world.theirs.job.pk}).content.decode()
    mine = client.get("/executions/", {"job": world.ours.job.pk}).content.decode()
    assert f"#{world.theirs.execution.pk}<" not in other
    assert f"#{world.ours.execution.pk}<" in mine


def test_managers_give_only_the_built_in_roles(world):
    Group.objects.create(name="powerful")  # say, a superuser's group with global permissions
    url = f"/api/v1/teams/{world.ours.team.pk}/members/"
    body = {"user": world.users["viewer"].username, "role": "powerful"}
    refused = world.client("manager").post(url, body, format="json")
    assert refused.status_code == 400
    assert "role" in refused.json()["errors"]
    assert world.client("superuser").post(url, body, format="json").status_code == 201


def test_a_script_keeps_its_leading_and_trailing_whitespace(world):
    script = "\n  cat <<EOF\n  indented\nEOF\n\n"
    response = world.client("manager").patch(
        f"/api/v1/jobs/{world.ours.job.pk}/", {"script": script}, format="json"
    )
    assert response.status_code == 200
    world.ours.job.refresh_from_db()
    assert world.ours.job.script == script


def test_a_token_cannot_expire_in_the_past(world):
    yesterday = (timezone.now() - timedelta(days=1)).isoformat()
    response = world.client("viewer").post(
        "/api/v1/tokens/", {"name": "old", "expires_at": yesterday}, format="json"
    )
    assert response.status_code == 400
    assert "expires_at" in response.json()["errors"]
