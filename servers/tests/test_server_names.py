"""A server's name is printable text on one line: it labels output, so it cannot forge any."""

from __future__ import annotations

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from accounts.models import ApiToken, Role
from servers.models import Server

pytestmark = pytest.mark.django_db

REFUSED = [
    "x <==\n==> y",  # would close the raw log's header line and open another
    "web\r1",
    "web\t1",
    "\x1b[2Jweb",  # a terminal escape sequence
    "web\u20281",  # a Unicode line separator
    "web\x00",
]
ACCEPTED = ["web-1", "東京 web (prod) #2", "x <== ==> y"]


@pytest.fixture
def manager(make_member, team):
    return make_member(team, Role.MANAGER)


@pytest.fixture
def api(manager) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {ApiToken.issue(manager, 'names')[1]}")
    return client


def create(api: APIClient, team, name: str):
    body = {"team": team.pk, "name": name, "host": "h", "username": "u", "auth_method": "password"}
    return api.post("/api/v1/servers/", body, format="json")


@pytest.mark.parametrize("name", REFUSED)
def test_the_api_refuses_a_name_that_is_not_one_printable_line(api, team, name):
    response = create(api, team, name)
    assert response.status_code == 400
    assert list(response.json()["errors"]) == ["name"]
    assert not Server.objects.exists()


@pytest.mark.parametrize("name", ACCEPTED)
def test_printable_names_in_any_script_are_accepted(api, team, name):
    assert create(api, team, name).status_code == 201
    assert Server.objects.get().name == name


def test_the_forms_refuse_it_too(client, manager, superuser, team):
    body = {"team": team.pk, "name": "x <==\n==> y", "host": "h", "port": 22, "username": "u"}
    body["auth_method"] = "password"
    client.force_login(manager)
    ui = client.post(reverse("server-add"), body)
    assert ui.status_code == 200
    assert "name" in ui.context["form"].errors
    client.force_login(superuser)
    admin = client.post(reverse("admin:servers_server_add"), body)
    assert admin.status_code == 200
    assert "name" in admin.context["adminform"].form.errors
    assert not Server.objects.exists()
