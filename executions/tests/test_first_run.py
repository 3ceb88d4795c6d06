"""Before anything has run, the dashboard and the executions list say what to do next."""

from __future__ import annotations

import pytest

from accounts.models import Role
from executions import services
from executions.models import Trigger
from jobs.models import Job
from servers.models import Server

pytestmark = pytest.mark.django_db


def steps(client) -> str:
    page = client.get("/").content.decode()
    if 'id="first-steps"' not in page:
        return ""
    start = page.index('id="first-steps"')
    return page[start : page.index("</div>", start)]


def test_a_manager_of_an_empty_team_is_shown_the_way_to_a_first_run(client, make_member, team):
    manager = make_member(team, Role.MANAGER)
    client.force_login(manager)
    shown = steps(client)
    assert '<a href="/servers/new/">add your first server</a>' in shown
    assert '<a href="/jobs/new/">write your first job</a>' in shown
    assert 'open a <a href="/jobs/">job</a> and press Run' in shown

    server = Server.objects.create(team=team, name="web", host="127.0.0.1", username="u")
    job = Job.objects.create(team=team, name="hello", script="true")
    job.servers.set([server])
    shown = steps(client)
    assert "add your first server" not in shown
    assert "write your first job" not in shown
    assert "press Run" in shown

    services.start_execution(job, trigger=Trigger.UI, triggered_by=manager)
    assert steps(client) == ""


def test_a_viewer_is_told_who_adds_things(client, make_member, team):
    client.force_login(make_member(team, Role.VIEWER))
    shown = steps(client)
    assert "a manager of your team adds them" in shown
    assert "a manager of your team writes them" in shown
    assert "an operator of your team runs the jobs" in shown
    assert "/servers/new/" not in shown


def test_someone_in_no_team_is_told_to_ask_for_one(client, django_user_model):
    client.force_login(django_user_model.objects.create_user("newcomer"))
    shown = steps(client)
    assert shown.count("You are not in a team yet: ask an administrator to add you to one.") == 1
    assert "<ol" not in shown


def test_the_executions_list_tells_an_empty_list_from_an_empty_search(client, make_member, team):
    client.force_login(make_member(team, Role.OPERATOR))
    page = client.get("/executions/").content.decode()
    assert 'Nothing has run yet: open a <a href="/jobs/">job</a> and press Run.' in page
    searched = client.get("/executions/", {"status": "failed"}).content.decode()
    assert "No executions match." in searched
    assert "Nothing has run yet" not in searched
