"""Actions on servers shared by the admin, the API and the UI."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.db.models import Q, QuerySet

from accounts import audit, policy
from accounts.models import Source
from executions.models import ACTIVE_STATUSES, Execution, HostRun
from jobs.models import Job
from servers import ssh
from servers.models import Server, Tag


class FingerprintMismatch(Exception):
    """The server no longer offers the key the person confirmed; nothing was trusted."""


def check_connection(server: Server) -> ssh.ConnectionCheck:
    """Connect, log in and run `true`; the result is kept on the server and returned."""
    try:
        check = ssh.check_connection(server.ssh_target())
    except ssh.CredentialError as exc:
        check = ssh.ConnectionCheck(status=exc.kind, latency_ms=None, message=str(exc))
    server.record_check(check)
    return check


def record_run_results(host_runs: Iterable[HostRun]) -> None:
    """What finished runs found out about their servers, kept where a test's result is.

    A run that started its script (it has an exit code, succeeded or timed out) got through
    to the server, its host key and the login: "ok". One that failed without an exit code
    did not, or lost the connection, or its script was killed by a signal: "run_failed", with
    the run's error. A cancelled run says nothing. Nor does a run that finished before the
    server's last test or host-key trust: the newer news stands.
    """
    from executions.models import Status  # executions builds on servers, not the reverse

    for run in host_runs:
        if run.server_id is None or run.finished_at is None or run.status == Status.CANCELLED:
            continue
        reached = run.exit_code is not None or run.status in (Status.SUCCEEDED, Status.TIMED_OUT)
        Server.objects.filter(
            Q(last_check_at__isnull=True) | Q(last_check_at__lt=run.finished_at),
            Q(host_key_trusted_at__isnull=True) | Q(host_key_trusted_at__lt=run.finished_at),
            pk=run.server_id,
        ).update(
            last_check_status="ok" if reached else "run_failed",
            last_check_message="a run got through and ran its script" if reached else run.error,
            last_check_latency_ms=None,
            last_check_at=run.finished_at,
        )


def trust_offered_host_key(
    server: Server, fingerprint: str, *, by: Any, source: Source
) -> ssh.HostKey:
    """Trust the key the server offers now, if it is the one the person was shown.

    Fetching again at confirmation means a key swapped in between is never trusted unseen.
    """
    key = ssh.fetch_host_key(server.host, server.port)
    if key.fingerprint != fingerprint:
        raise FingerprintMismatch(
            f"the server now offers {key.fingerprint}, not the key you confirmed "
            f"({fingerprint}); nothing was trusted"
        )
    previous = server.host_key_fingerprint
    with transaction.atomic():
        server.trust_host_key(key, by)
        audit.record(
            "trust_host_key",
            server,
            actor=by,
            source=source,
            details={"fingerprint": key.fingerprint, "previous": previous},
        )
    return key


def save_server(
    server: Server,
    *,
    actor: Any,
    source: Source,
    tags: Iterable[Tag | str] | None = None,
    changed_fields: Iterable[str] = (),
) -> Server:
    """Create or change a server (and set its tags, if given) with its audit row.

    A tag given by name is created if there is none of that name yet. A server moved to
    another team stops being a target of its old team's jobs.
    """
    created = server._state.adding
    with transaction.atomic():
        server.save()
        if tags is not None:
            server.tags.set([Tag.named(tag) for tag in tags])
        audit.record_saved(
            server, created=created, actor=actor, source=source, changed_fields=changed_fields
        )
        if not created:
            _leave_other_teams_jobs(server, actor=actor, source=source)
    return server


def _leave_other_teams_jobs(server: Server, *, actor: Any, source: Source) -> None:
    # A job runs only on its own team's servers (Job.clean_targets): left as a target, the
    # server would make its old team's job refuse to run, and show their pages its name.
    for job in Job.objects.filter(servers=server).exclude(team_id=server.team_id):
        job.servers.remove(server)
        # Recorded in the job's team; the server's new team is not theirs to know.
        audit.record(
            "change",
            job,
            actor=actor,
            source=source,
            details={"fields": ["servers"], "removed": [server.name]},
        )


def visible_tags(user: Any) -> QuerySet[Tag]:
    """The tags a face may offer the user: those of the servers they may see.

    Tags belong to no team, but a name such as "payroll-db" tells about the servers of the
    team that uses it. Who may read the tag list itself (a global permission, as superusers
    have) is offered every tag, unused ones too: they can add one from the admin's form.
    """
    if user.has_perm("servers.view_tag"):
        return Tag.objects.all()
    return Tag.objects.filter(servers__in=policy.visible(Server.objects.all(), user)).distinct()


@dataclass(frozen=True)
class ServerDeletion:
    """What deleting a server touches, as far as one person may see: shown before they confirm.

    Its past runs keep the server's name (HostRun.server_name) and stay findable by it.
    """

    jobs: list[Job]  # they lose it as a default target
    # Executions with a host on it not finished yet: a host already connected runs to its end,
    # one still waiting for a parallel slot fails with "the server was deleted".
    running: list[Execution]


def deletion_effects(server: Server, user: Any) -> ServerDeletion:
    running = Execution.objects.filter(
        host_runs__server=server, host_runs__status__in=ACTIVE_STATUSES
    ).distinct()
    return ServerDeletion(
        jobs=list(policy.visible(server.jobs.all(), user)),
        running=list(policy.visible(running, user)),
    )


def delete_server(server: Server, *, actor: Any, source: Source) -> None:
    with transaction.atomic():
        audit.record("delete", server, actor=actor, source=source)
        server.delete()
