"""Per-team roles through Django's own permission API: `has_perm(perm, obj)` and `{{ perms }}`."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import AnonymousUser, User
from django.template import RequestContext, Template
from django.test import RequestFactory

from accounts import policy
from accounts.models import Membership, Role, Team
from accounts.roles import role_group
from jobs.models import Job
from servers.models import Server

pytestmark = pytest.mark.django_db


@pytest.fixture
def objects(team: Team, other_team: Team) -> dict[str, Server | Job]:
    ours = Server.objects.create(team=team, name="ours", host="h", username="u")
    theirs = Server.objects.create(team=other_team, name="theirs", host="h", username="u")
    return {
        "our_server": ours,
        "their_server": theirs,
        "our_job": Job.objects.create(team=team, name="ours", script="true"),
        "their_job": Job.objects.create(team=other_team, name="theirs", script="true"),
    }


@pytest.mark.parametrize(
    ("role", "perm", "allowed"),
    [
        (Role.VIEWER, "servers.view_server", True),
        (Role.VIEWER, "jobs.run_job", False),
        (Role.VIEWER, "servers.test_connection", False),
        (Role.OPERATOR, "jobs.run_job", True),
        (Role.OPERATOR, "servers.test_connection", True),
        (Role.OPERATOR, "servers.change_server", False),
        (Role.OPERATOR, "servers.trust_host_key", False),
        (Role.MANAGER, "servers.change_server", True),
        (Role.MANAGER, "servers.trust_host_key", True),
        (Role.MANAGER, "jobs.delete_job", True),
    ],
)
def test_role_grants_permission_on_own_team_objects_only(
    make_member, team, objects, role, perm, allowed
):
    user = make_member(team, role)
    app = perm.split(".")[0]
    ours, theirs = (objects["our_server"], objects["their_server"])
    if app == "jobs":
        ours, theirs = (objects["our_job"], objects["their_job"])
    assert user.has_perm(perm, ours) is allowed
    assert user.has_perm(perm, theirs) is False
    assert user.has_perm(perm) is allowed  # without an object: "in some team"


def test_roles_in_two_teams_are_kept_apart(make_member, team, other_team, objects):
    user = make_member(team, Role.MANAGER, "both")
    Membership.objects.create(team=other_team, user=user, role=role_group(Role.VIEWER))
    assert user.has_perm("servers.change_server", objects["our_server"])
    assert user.has_perm("servers.view_server", objects["their_server"])
    assert not user.has_perm("servers.change_server", objects["their_server"])
    assert user.has_perm("accounts.manage_members", team)
    assert not user.has_perm("accounts.manage_members", other_team)


def test_superuser_may_do_everything_everywhere(superuser, objects):
    for obj in objects.values():
        assert superuser.has_perm("servers.delete_server", obj)
        assert superuser.has_perm("jobs.run_job", obj)
    assert set(policy.visible(Server.objects.all(), superuser)) == {
        objects["our_server"],
        objects["their_server"],
    }


def test_outsider_and_anonymous_have_no_permission(django_user_model, objects):
    outsider = django_user_model.objects.create_user("outsider", is_staff=True)
    for user in (outsider, AnonymousUser()):
        assert not user.has_perm("servers.view_server", objects["our_server"])
        assert not user.has_perm("servers.view_server")
    assert not policy.visible(Server.objects.all(), outsider).exists()


def test_inactive_member_has_no_permission(make_member, team, objects):
    user = make_member(team, Role.MANAGER)
    user.is_active = False
    user.save()
    user = User.objects.get(pk=user.pk)
    assert not user.has_perm("servers.view_server", objects["our_server"])


TEMPLATE = Template(
    "{% if perms.servers.view_server %}see {% endif %}"
    "{% if perms.jobs.run_job %}run {% endif %}"
    "{% if perms.jobs.change_job %}edit {% endif %}"
    "{% if perms.accounts.manage_members %}members{% endif %}"
)


@pytest.mark.parametrize(
    ("role", "shown"),
    [
        (Role.VIEWER, "see "),
        (Role.OPERATOR, "see run "),
        (Role.MANAGER, "see run edit members"),
    ],
)
def test_perms_in_templates_follow_the_role(make_member, team, role, shown):
    request = RequestFactory().get("/")
    request.user = make_member(team, role)
    assert TEMPLATE.render(RequestContext(request)) == shown


def test_perms_in_templates_are_empty_for_outsiders(django_user_model):
    request = RequestFactory().get("/")
    request.user = django_user_model.objects.create_user("outsider")
    assert TEMPLATE.render(RequestContext(request)) == ""
