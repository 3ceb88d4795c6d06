"""A change and its audit row commit together: when the audit row cannot be written, the
change is undone too, in every service the UI, the API and the admin call."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User

from accounts import audit, services
from accounts.models import ApiToken, AuditEvent, Membership, Role, Source, Team
from accounts.roles import role_group
from executions import services as execution_services
from executions.models import Status
from jobs import services as job_services
from jobs.models import Job
from servers import services as server_services
from servers import ssh
from servers.models import Server, Tag

pytestmark = [pytest.mark.django_db, pytest.mark.timeout(60)]


class AuditDown(Exception):
    pass


def break_audit(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args: object, **kwargs: object) -> None:
        raise AuditDown

    monkeypatch.setattr(audit, "record", fail)


@pytest.fixture
def audit_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    break_audit(monkeypatch)


@pytest.fixture
def actor(django_user_model) -> User:
    return django_user_model.objects.create_user("actor")


def make_server(team: Team) -> Server:
    return Server.objects.create(team=team, name="web", host="h", username="u")


def job_of(team: Team) -> Job:
    job = Job.objects.create(team=team, name="deploy", script="true")
    job.servers.set([make_server(team)])
    return job


def test_server_create_is_undone(audit_fails, actor, team):
    tag = Tag.objects.create(name="prod")
    with pytest.raises(AuditDown):
        server_services.save_server(
            Server(team=team, name="web", host="h", username="u"),
            actor=actor,
            source=Source.UI,
            tags=[tag],
        )
    assert not Server.objects.exists()
    assert not Server.tags.through.objects.exists()


def test_server_change_is_undone(actor, team, monkeypatch):
    server = make_server(team)
    break_audit(monkeypatch)
    server.description = "changed"
    with pytest.raises(AuditDown):
        server_services.save_server(
            server, actor=actor, source=Source.API, changed_fields=["description"]
        )
    server.refresh_from_db()
    assert server.description == ""


def test_server_delete_is_undone(actor, team, monkeypatch):
    server = make_server(team)
    break_audit(monkeypatch)
    with pytest.raises(AuditDown):
        server_services.delete_server(server, actor=actor, source=Source.ADMIN)
    assert Server.objects.filter(pk=server.pk).exists()


def test_trusting_a_host_key_is_undone(actor, make_server, monkeypatch):
    server = make_server(host_key="")
    offered = ssh.fetch_host_key(server.host, server.port)
    break_audit(monkeypatch)
    with pytest.raises(AuditDown):
        server_services.trust_offered_host_key(
            server, offered.fingerprint, by=actor, source=Source.UI
        )
    server.refresh_from_db()
    assert (server.host_key, server.host_key_fingerprint) == ("", "")


def test_job_create_is_undone(audit_fails, actor, team):
    server = make_server(team)
    with pytest.raises(AuditDown):
        job_services.save_job(
            Job(team=team, name="deploy", script="true"),
            actor=actor,
            source=Source.UI,
            servers=[server],
        )
    assert not Job.objects.exists()
    assert not Job.servers.through.objects.exists()


def test_job_change_is_undone(actor, team, monkeypatch):
    job = Job.objects.create(team=team, name="deploy", script="true")
    server = make_server(team)
    break_audit(monkeypatch)
    job.script = "false"
    with pytest.raises(AuditDown):
        job_services.save_job(
            job, actor=actor, source=Source.API, servers=[server], changed_fields=["script"]
        )
    job.refresh_from_db()
    assert (job.script, list(job.servers.all())) == ("true", [])


def test_job_delete_is_undone(actor, team, monkeypatch):
    job = Job.objects.create(team=team, name="deploy", script="true")
    break_audit(monkeypatch)
    with pytest.raises(AuditDown):
        job_services.delete_job(job, actor=actor, source=Source.ADMIN)
    assert Job.objects.filter(pk=job.pk).exists()


def test_adding_a_member_is_undone(audit_fails, actor, team, django_user_model):
    newcomer = django_user_model.objects.create_user("newcomer")
    with pytest.raises(AuditDown):
        services.set_membership(
            team, newcomer, role_group(Role.VIEWER), actor=actor, source=Source.API
        )
    assert not Membership.objects.filter(user=newcomer).exists()


def test_changing_a_role_is_undone(actor, make_member, team, monkeypatch):
    member = make_member(team, Role.VIEWER)
    break_audit(monkeypatch)
    with pytest.raises(AuditDown):
        services.set_membership(
            team, member, role_group(Role.MANAGER), actor=actor, source=Source.ADMIN
        )
    assert Membership.objects.get(user=member).role == role_group(Role.VIEWER)


def test_removing_a_member_is_undone(actor, make_member, team, monkeypatch):
    membership = Membership.objects.get(user=make_member(team, Role.VIEWER))
    break_audit(monkeypatch)
    with pytest.raises(AuditDown):
        services.remove_membership(membership, actor=actor, source=Source.UI)
    assert Membership.objects.filter(pk=membership.pk).exists()


def test_issuing_a_token_is_undone(audit_fails, actor):
    with pytest.raises(AuditDown):
        services.issue_token(ApiToken(user=actor, name="ci"), source=Source.API)
    assert not ApiToken.objects.exists()


def test_revoking_a_token_is_undone(actor, monkeypatch):
    token, _secret = ApiToken.issue(actor, "ci")
    break_audit(monkeypatch)
    with pytest.raises(AuditDown):
        services.revoke_token(token, actor=actor, source=Source.UI)
    token.refresh_from_db()
    assert token.revoked_at is None


def test_revoking_twice_records_once(actor):
    token, _secret = ApiToken.issue(actor, "ci")
    assert services.revoke_token(token, actor=actor, source=Source.API) is True
    assert services.revoke_token(token, actor=actor, source=Source.API) is False
    assert AuditEvent.objects.filter(action="revoke_token").count() == 1


def test_cancel_of_a_queued_run_is_undone(actor, team, monkeypatch):
    execution = execution_services.start_execution(
        job_of(team), trigger=Source.UI, triggered_by=actor
    )
    break_audit(monkeypatch)
    with pytest.raises(AuditDown):
        execution_services.cancel_execution(execution, by=actor, source=Source.UI)
    execution.refresh_from_db()
    assert (execution.status, execution.cancel_requested_at) == (Status.QUEUED, None)
    assert execution.host_runs.get().status == Status.QUEUED


def test_cancel_of_a_running_run_is_undone(actor, team, monkeypatch):
    execution = execution_services.start_execution(
        job_of(team), trigger=Source.UI, triggered_by=actor
    )
    assert execution_services.claim_execution(execution.pk, "test-worker")
    break_audit(monkeypatch)
    with pytest.raises(AuditDown):
        execution_services.cancel_execution(execution, by=actor, source=Source.UI)
    execution.refresh_from_db()
    assert (execution.status, execution.cancel_requested_at) == (Status.RUNNING, None)
