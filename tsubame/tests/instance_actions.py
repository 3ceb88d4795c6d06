"""What backup tests do inside an instance of their own: `python -m tsubame.tests.instance_actions
ACTION`, run with that instance's environment (see tsubame.tests.instance).

- populate: a team, servers with secrets, and an execution whose output has every byte value;
- snapshot: print (JSON) the servers' secrets as tsubame reads them, and every stored chunk;
- write: until stopped, add executions with their output, each in one transaction that also
  counts it on the team; prints "ready" once the first is committed;
- writes: print (JSON) what a snapshot of those writes holds and whether it is consistent.
"""

from __future__ import annotations

import json
import os
import sys

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tsubame.settings")
django.setup()

from django.db import transaction  # noqa: E402
from django.utils import timezone  # noqa: E402

from accounts.models import Team  # noqa: E402
from executions.models import Execution, HostRun, LogChunk, Trigger  # noqa: E402
from jobs.models import Job  # noqa: E402
from servers.models import Server  # noqa: E402
from tsubame.crypto import Undecryptable  # noqa: E402

SECRETS = {
    "keyed": {
        "private_key": "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAA=\n"
        "-----END OPENSSH PRIVATE KEY-----\n",
        "passphrase": "a passphrase, not ASCII: ✓",
    },
    "by-password": {"password": "pässwörd with a newline\n"},
}
# Every byte value, NUL and bytes that are not UTF-8 included: logs are kept as sent.
OUTPUT = [
    (LogChunk.Stream.STDOUT, bytes(range(256)) * 8),
    (LogChunk.Stream.STDERR, b"\x00\xe2\x82"),
]
WRITER_TEAM = "writer"
WRITER_CHUNKS = 20


def new_execution(job: Job, server: Server) -> tuple[Execution, HostRun]:
    execution = Execution.objects.create(
        team=job.team,
        job=job,
        job_name=job.name,
        script=job.script,
        interpreter="/bin/sh",
        max_parallel=1,
        trigger=Trigger.SYSTEM,
    )
    host_run = HostRun.objects.create(
        execution=execution, server=server, server_name=server.name, address=server.host
    )
    return execution, host_run


def chunks(execution: Execution, host_run: HostRun, output: list[tuple[int, bytes]]) -> None:
    LogChunk.objects.bulk_create(
        LogChunk(
            execution=execution,
            host_run=host_run,
            seq=seq,
            stream=stream,
            data=data,
            created_at=timezone.now(),
        )
        for seq, (stream, data) in enumerate(output)
    )


def populate() -> None:
    team = Team.objects.create(name="backed-up")
    servers = [
        Server.objects.create(team=team, name=name, host="127.0.0.1", username="ops", **secrets)
        for name, secrets in SECRETS.items()
    ]
    job = Job.objects.create(team=team, name="noisy", script="cat /dev/urandom")
    chunks(*new_execution(job, servers[0]), OUTPUT)


def snapshot() -> dict[str, object]:
    servers = {}
    for server in Server.objects.order_by("name"):
        values = {name: getattr(server, name) for name in ("private_key", "passphrase", "password")}
        servers[server.name] = {
            "secrets": {name: value for name, value in values.items() if value is not None},
            "undecryptable": sorted(n for n, v in values.items() if isinstance(v, Undecryptable)),
        }
    logs: dict[str, list[list[object]]] = {}
    for chunk in LogChunk.objects.order_by("execution_id", "seq"):
        entry = [chunk.seq, chunk.stream, bytes(chunk.data).hex()]
        logs.setdefault(str(chunk.execution_id), []).append(entry)
    return {"servers": servers, "logs": logs}


def writer_payload(execution_id: int, seq: int) -> bytes:
    return f"{execution_id}:{seq}:".encode() * 100 + bytes(range(256))


def write() -> None:
    team = Team.objects.create(name=WRITER_TEAM, description="0")
    server = Server.objects.create(team=team, name="target", host="127.0.0.1", username="ops")
    job = Job.objects.create(team=team, name="writer", script="yes")
    written = 0
    while True:
        with transaction.atomic():
            execution, host_run = new_execution(job, server)
            output = [
                (LogChunk.Stream.STDOUT, writer_payload(execution.pk, seq))
                for seq in range(WRITER_CHUNKS)
            ]
            chunks(execution, host_run, output)
            written += 1
            Team.objects.filter(pk=team.pk).update(description=str(written))
        if written == 1:
            print("ready", flush=True)


def writes() -> dict[str, object]:
    team = Team.objects.get(name=WRITER_TEAM)
    executions = Execution.objects.filter(team=team)
    incomplete = []
    for execution in executions:
        stored = list(LogChunk.objects.filter(execution=execution).order_by("seq"))
        expected = [writer_payload(execution.pk, seq) for seq in range(WRITER_CHUNKS)]
        if [bytes(chunk.data) for chunk in stored] != expected:
            incomplete.append(execution.pk)
    return {
        "counted": int(team.description),
        "executions": executions.count(),
        "incomplete": incomplete,
    }


if __name__ == "__main__":
    action = sys.argv[1]
    if action == "populate":
        populate()
    elif action == "snapshot":
        print(json.dumps(snapshot()))
    elif action == "write":
        write()
    elif action == "writes":
        print(json.dumps(writes()))
    else:
        sys.exit(f"unknown action {action!r}")
