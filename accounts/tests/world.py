"""Two teams with one person per role, objects in each, and an API client per persona."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.contrib.auth.models import User
from rest_framework.test import APIClient

from accounts.models import ApiToken, Membership, Role, Team
from accounts.roles import role_group
from executions import services
from executions.models import Execution, Trigger
from jobs.models import Job
from servers.models import Server
from servers.tests.sshd import LocalSshd

PERSONAS = ["anonymous", "viewer", "operator", "manager", "other_team_manager", "superuser"]


@dataclass
class TeamObjects:
    team: Team
    server: Server
    job: Job
    execution: Execution
    member: User


@dataclass
class World:
    ours: TeamObjects
    theirs: TeamObjects
    users: dict[str, User] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)

    def client(self, persona: str) -> APIClient:
        client = APIClient()
        if persona != "anonymous":
            client.credentials(HTTP_AUTHORIZATION=f"Bearer {self.tokens[persona]}")
        return client


def _objects(team: Team, sshd: LocalSshd, member: User) -> TeamObjects:
    server = Server.objects.create(
        team=team,
        name=f"{team.name}-web",
        host=sshd.host,
        port=sshd.port,
        username=sshd.username,
        private_key=sshd.client_keys.private_key,
    )
    server.trust_host_key(sshd.host_key, None)
    job = Job.objects.create(team=team, name=f"{team.name}-job", script="echo hi")
    job.servers.set([server])
    execution = services.start_execution(job, trigger=Trigger.SYSTEM)
    Membership.objects.create(team=team, user=member, role=role_group(Role.VIEWER))
    return TeamObjects(team, server, job, execution, member)


def build_world(sshd: LocalSshd) -> World:
    ours, theirs = Team.objects.create(name="ours"), Team.objects.create(name="theirs")
    world = World(
        ours=_objects(ours, sshd, User.objects.create_user("member-ours")),
        theirs=_objects(theirs, sshd, User.objects.create_user("member-theirs")),
    )
    roles = {
        "viewer": (ours, Role.VIEWER),
        "operator": (ours, Role.OPERATOR),
        "manager": (ours, Role.MANAGER),
        "other_team_manager": (theirs, Role.MANAGER),
    }
    for persona, (team, role) in roles.items():
        user = User.objects.create_user(persona)  # personas use tokens or force_login
        Membership.objects.create(team=team, user=user, role=role_group(role))
        world.users[persona] = user
    world.users["superuser"] = User.objects.create_superuser("superuser")
    for persona, user in world.users.items():
        world.tokens[persona] = ApiToken.issue(user, f"{persona} token")[1]
    return world


def expected(persona: str, level: str, team: str) -> Any:
    """What a persona gets for an action of `level` on an object of team "ours"/"theirs".

    "ok" means the endpoint's own success status.
    """
    if persona == "anonymous":
        return 401
    if persona == "superuser":
        return "ok"
    member_of = "theirs" if persona == "other_team_manager" else "ours"
    if team != member_of:
        return 404  # another team's objects do not exist for this user
    role = "manager" if persona == "other_team_manager" else persona
    allowed = {"viewer": {"view"}, "operator": {"view", "operate"}}.get(
        role, {"view", "operate", "manage"}
    )
    return "ok" if level in allowed else 403
