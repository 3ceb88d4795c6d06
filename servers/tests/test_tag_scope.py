"""Tags belong to no team, but a tag's name tells about the servers that carry it: each face
offers only the tags of servers the user may see."""

from __future__ import annotations

import pytest
from django.urls import reverse

from accounts.models import Role
from servers.models import Server

pytestmark = pytest.mark.django_db


def server(team, name: str, *tags: str) -> Server:
    created = Server.objects.create(team=team, name=name, host=f"{name}.example.test", username="u")
    for tag in tags:
        created.tags.create(name=tag)
    return created


@pytest.fixture
def member(client, make_member, team, other_team):
    server(team, "ours", "web")
    server(other_team, "theirs", "payroll-db")
    user = make_member(team, Role.MANAGER)
    client.force_login(user)
    return user


def test_server_form_suggests_only_tags_of_visible_servers(client, member):
    response = client.get(reverse("server-add"))
    assert [tag.name for tag in response.context["known_tags"]] == ["web"]
    assert b"payroll-db" not in response.content


def test_server_list_filters_only_by_tags_of_visible_servers(client, member):
    response = client.get(reverse("server-list"))
    assert [tag.name for tag in response.context["tags"]] == ["web"]
    assert b"payroll-db" not in response.content


def test_admin_server_form_offers_only_tags_of_visible_servers(client, member):
    response = client.get(reverse("admin:servers_server_add"))
    field = response.context["adminform"].form.fields["tags"]
    assert [tag.name for tag in field.queryset] == ["web"]
    assert b"payroll-db" not in response.content


def test_a_tag_only_another_team_uses_is_still_taken_by_its_name(client, member, team):
    # Typing the name joins the existing tag (names are unique); nothing tells it existed.
    response = client.post(
        reverse("server-add"),
        {
            "team": team.pk,
            "name": "new",
            "host": "new.example.test",
            "port": 22,
            "username": "u",
            "auth_method": "key",
            "tags": "payroll-db",
        },
    )
    assert response.status_code == 302
    new = Server.objects.get(name="new")
    assert [tag.name for tag in new.tags.all()] == ["payroll-db"]
    assert new.tags.get() == Server.objects.get(name="theirs").tags.get()


def test_superuser_is_offered_every_tag_also_unused_ones(client, superuser, team, other_team):
    server(team, "ours", "web")
    server(other_team, "theirs", "payroll-db")
    Server.objects.get(name="ours").tags.create(name="spare").servers.clear()
    client.force_login(superuser)
    response = client.get(reverse("admin:servers_server_add"))
    field = response.context["adminform"].form.fields["tags"]
    assert [tag.name for tag in field.queryset] == ["payroll-db", "spare", "web"]
