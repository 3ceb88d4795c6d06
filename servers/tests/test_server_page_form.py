"""The UI's server form: the team preselected, tags typed by name, each method's secrets."""

from __future__ import annotations

import pytest
from django.urls import reverse

from accounts.models import AuditEvent, Role
from servers.models import Server, Tag

pytestmark = pytest.mark.django_db


def fields(team, **changes: object) -> dict[str, object]:
    return {
        "team": team.pk,
        "name": "web-1",
        "host": "web-1.example.test",
        "port": 22,
        "username": "deploy",
        "auth_method": "key",
        "description": "",
    } | changes


def team_options(response) -> list[tuple[str, bool]]:
    field = response.context["form"]["team"]
    return [(str(w.data["value"]), w.data["selected"]) for w in field.subwidgets]


@pytest.fixture
def manager(client, make_member, team):
    user = make_member(team, Role.MANAGER)
    client.force_login(user)
    return user


@pytest.mark.parametrize("url", ["server-add", "job-add"])
def test_the_only_team_one_may_add_to_is_preselected(client, manager, team, url):
    response = client.get(reverse(url))
    assert team_options(response) == [(str(team.pk), True)]


@pytest.mark.parametrize("url", ["server-add", "job-add"])
def test_with_two_teams_nothing_is_preselected(client, make_member, team, other_team, url):
    user = make_member(team, Role.MANAGER)
    user.memberships.create(team=other_team, role=user.memberships.get().role)
    client.force_login(user)
    options = team_options(client.get(reverse(url)))
    assert options == [("", True), (str(other_team.pk), False), (str(team.pk), False)]


def test_typed_tag_names_are_set_and_new_ones_created(client, manager, team):
    Tag.objects.create(name="web")
    response = client.post(reverse("server-add"), fields(team, tags="web, eu-west  web,"))
    assert response.status_code == 302
    server = Server.objects.get()
    assert [tag.name for tag in server.tags.all()] == ["eu-west", "web"]
    assert Tag.objects.count() == 2

    edit = reverse("server-edit", args=[server.pk])
    assert client.get(edit).context["form"]["tags"].value() == "eu-west, web"
    assert client.post(edit, fields(team, tags="web")).status_code == 302
    assert [tag.name for tag in server.tags.all()] == ["web"]
    change = AuditEvent.objects.filter(action="change").get()
    assert change.details == {"fields": ["tags"]}


def test_a_tag_name_that_is_not_a_slug_is_refused(client, manager, team):
    response = client.post(reverse("server-add"), fields(team, tags="web, prod/eu"))
    assert response.status_code == 200
    assert response.context["form"].errors["tags"] == [
        "The tag 'prod/eu' may only have letters, digits, - and _."
    ]
    assert not Server.objects.exists()
    assert not Tag.objects.exists()


def test_a_password_sent_with_key_authentication_is_ignored(client, manager, team, ssh_client_keys):
    response = client.post(
        reverse("server-add"),
        fields(team, new_private_key=ssh_client_keys.private_key, new_password="typed-pw-42"),
    )
    assert response.status_code == 302
    server = Server.objects.get()
    assert server.private_key == ssh_client_keys.private_key
    assert server.password is None


def test_a_key_sent_with_password_authentication_is_neither_checked_nor_stored(
    client, manager, team
):
    response = client.post(
        reverse("server-add"),
        fields(
            team,
            auth_method="password",
            new_password="typed-pw-42",
            new_private_key="not a key at all",
            new_passphrase="typed-passphrase-42",
        ),
    )
    assert response.status_code == 302
    server = Server.objects.get()
    assert server.password == "typed-pw-42"
    assert server.private_key is None
    assert server.passphrase is None


def clear_boxes(response) -> list[str]:
    return [name for name in response.context["form"].fields if name.startswith("clear_")]


def test_a_clear_box_is_offered_only_for_a_stored_secret(client, manager, team):
    assert clear_boxes(client.get(reverse("server-add"))) == []
    server = Server.objects.create(
        team=team, name="web-1", host="h", username="u", auth_method="password", password="pw"
    )
    edit = reverse("server-edit", args=[server.pk])
    response = client.get(edit)
    assert clear_boxes(response) == ["clear_password"]
    assert 'name="clear_private_key"' not in response.content.decode()

    client.post(edit, fields(team, auth_method="password", clear_password="on"))
    server.refresh_from_db()
    assert server.password is None
    assert clear_boxes(client.get(edit)) == []
