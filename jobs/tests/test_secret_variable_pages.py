"""The secret variable pages: who may see and change them, and that no value is ever shown.

The autouse `secret_watch` fixture (conftest.py) fails any test here whose responses show a
stored value; the assertions on values only make the point where it is easy to miss.
"""

from __future__ import annotations

import pytest
from django.test import Client

from accounts.models import AuditEvent, Role
from jobs.models import Job, SecretVariable

pytestmark = [pytest.mark.django_db, pytest.mark.timeout(60)]

VALUE = "s3cret-value-of-ours"


@pytest.fixture
def variable(team) -> SecretVariable:
    return SecretVariable.objects.create(
        team=team, name="DB_PASSWORD", value=VALUE, description="The app's database."
    )


@pytest.fixture
def personas(make_member, team, other_team, superuser) -> dict[str, Client]:
    users = {
        "viewer": make_member(team, Role.VIEWER),
        "operator": make_member(team, Role.OPERATOR),
        "manager": make_member(team, Role.MANAGER),
        "other_team_manager": make_member(other_team, Role.MANAGER),
        "superuser": superuser,
    }
    clients = {"anonymous": Client()}
    for persona, user in users.items():
        clients[persona] = Client()
        clients[persona].force_login(user)
    return clients


@pytest.mark.parametrize(
    ("persona", "list_", "new", "edit", "delete"),
    [
        ("anonymous", 302, 302, 302, 302),
        ("viewer", 403, 403, 404, 404),
        ("operator", 403, 403, 404, 404),
        ("manager", 200, 200, 200, 200),
        ("other_team_manager", 200, 200, 404, 404),
        ("superuser", 200, 200, 200, 200),
    ],
)
def test_who_may_open_the_pages(personas, variable, persona, list_, new, edit, delete):
    client = personas[persona]
    assert client.get("/jobs/secret-variables/").status_code == list_
    assert client.get("/jobs/secret-variables/new/").status_code == new
    assert client.get(f"/jobs/secret-variables/{variable.pk}/edit/").status_code == edit
    assert client.get(f"/jobs/secret-variables/{variable.pk}/delete/").status_code == delete


@pytest.mark.parametrize("persona", ["viewer", "operator", "other_team_manager"])
def test_who_may_not_change_cannot_post_either(personas, team, variable, persona):
    client = personas[persona]
    created = client.post(
        "/jobs/secret-variables/new/", {"team": team.pk, "name": "NEW", "new_value": "v"}
    )
    changed = client.post(
        f"/jobs/secret-variables/{variable.pk}/edit/", {"name": "RENAMED", "new_value": "v"}
    )
    deleted = client.post(f"/jobs/secret-variables/{variable.pk}/delete/")
    # Another team's manager may create in their own team, not in ours: the team is refused.
    assert created.status_code == (200 if persona == "other_team_manager" else 403)
    assert changed.status_code == deleted.status_code == 404
    assert list(SecretVariable.objects.values_list("name", flat=True)) == ["DB_PASSWORD"]


def test_the_list_shows_what_the_user_may_see_with_the_jobs_that_use_each(
    personas, team, other_team, variable
):
    job = Job.objects.create(team=team, name="deploy", script="true")
    job.secret_variables.set([variable])
    SecretVariable.objects.create(team=other_team, name="THEIRS", value="their-value-123")
    page = personas["manager"].get("/jobs/secret-variables/").content.decode()
    assert "DB_PASSWORD" in page
    assert "The app&#x27;s database." in page
    assert f'<a href="/jobs/{job.pk}/">deploy</a>' in page
    assert "THEIRS" not in page

    # The superuser sees both teams, and filters by one.
    client = personas["superuser"]
    assert "THEIRS" in client.get("/jobs/secret-variables/").content.decode()
    filtered = client.get("/jobs/secret-variables/", {"team": team.pk}).content.decode()
    assert "DB_PASSWORD" in filtered
    assert "THEIRS" not in filtered


def test_a_manager_creates_changes_and_deletes_one(personas, team):
    client = personas["manager"]
    response = client.post(
        "/jobs/secret-variables/new/",
        {"team": team.pk, "name": "API_KEY", "new_value": "first-value-1234", "description": ""},
    )
    assert response.status_code == 302
    assert response["Location"] == "/jobs/secret-variables/"
    variable = SecretVariable.objects.get(name="API_KEY")
    assert variable.value == "first-value-1234"
    assert "Saved API_KEY." in client.get(response["Location"]).content.decode()

    # Left empty, the value is kept; the team cannot be moved (jobs list it by name).
    url = f"/jobs/secret-variables/{variable.pk}/edit/"
    edit_page = client.get(url).content.decode()
    assert "first-value-1234" not in edit_page
    assert "Leave empty to keep the current value." in edit_page
    response = client.post(url, {"name": "API_KEY", "description": "For the API.", "new_value": ""})
    assert response.status_code == 302
    variable.refresh_from_db()
    assert (variable.value, variable.description) == ("first-value-1234", "For the API.")
    client.post(url, {"name": "API_KEY", "description": "For the API.", "new_value": "second-1"})
    variable.refresh_from_db()
    assert variable.value == "second-1"
    changes = AuditEvent.objects.filter(action="change", object_id=str(variable.pk))
    assert changes.count() == 2

    # The delete page names the jobs that list it.
    job = Job.objects.create(team=team, name="deploy", script="true")
    job.secret_variables.set([variable])
    page = client.get(f"/jobs/secret-variables/{variable.pk}/delete/").content.decode()
    assert f'<a href="/jobs/{job.pk}/">deploy</a>' in page
    assert "1 job lists it" in page
    response = client.post(f"/jobs/secret-variables/{variable.pk}/delete/")
    assert response.status_code == 302
    assert not SecretVariable.objects.exists()
    assert not job.secret_variables.exists()


def test_a_value_typed_into_a_form_with_errors_is_not_sent_back(personas, team, variable):
    typed = "typed-value-never-shown"
    response = personas["manager"].post(
        "/jobs/secret-variables/new/",
        {"team": team.pk, "name": "DB_PASSWORD", "new_value": typed},  # the name is taken
    )
    assert response.status_code == 200
    page = response.content.decode()
    assert "errorlist" in page
    assert typed not in page
    assert VALUE not in page


@pytest.mark.parametrize(
    ("persona", "shown"),
    [("viewer", False), ("operator", False), ("manager", True), ("superuser", True)],
)
def test_the_menu_links_the_pages_for_those_who_may_see_them(personas, persona, shown):
    page = personas[persona].get("/jobs/").content.decode()
    assert ('href="/jobs/secret-variables/"' in page) == shown
