"""Parameters and secrets reach the script byte-exact, and secrets never leave it unmasked.

Everything here runs for real: the worker's entry point in this process, the real sshd, and
the faces (API, raw download, live WebSocket) reading what was stored.
"""

from __future__ import annotations

import base64
import json
import logging
import shlex
import subprocess
import uuid
from pathlib import Path

import pytest
from asgiref.sync import async_to_sync
from rest_framework.test import APIClient

from accounts.models import ApiToken, Role
from executions import runner
from executions.models import Execution, HostRun, LogChunk, Status
from executions.tests.helpers import output, run, start, wait_until
from executions.tests.live_client import session_headers
from executions.tests.test_live_websocket import chunks_of, listen
from jobs.models import SecretVariable
from jobs.parameters import clean_definitions

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]

HOSTILE = {
    "QUOTES": "it's \"quoted\" 'twice'",
    "DOLLARS": "$HOME $(id -u) `id -u` ${PATH} $1 $$",
    "BACKSLASHES": "a\\b\\\\c\\n\\'",
    "NEWLINES": "line1\nline2\n\n",
    "ONLY_NEWLINES": "\n\n\n",
    "UNICODE": "日本語 é ✓ \u2028",
    "SPACES": "  lead and trail  ",
    "GLOB": "* ? [a] ~ #",
    "DASHES": "-n -e --",
    "PERCENT": "%s %d %%",
}


def text_job(make_job, server, script: str, names, **fields):
    job = make_job(script, [server], **fields)
    job.parameters = clean_definitions([{"name": name, "type": "text"} for name in names])
    job.save()
    return job


@pytest.mark.parametrize("interpreter", ["/bin/bash", "/bin/sh", "/usr/bin/python3"])
def test_values_reach_the_script_byte_exact(make_server, make_job, interpreter) -> None:
    server = make_server(name="web-1")
    names = [*HOSTILE, "TSUBAME_EXECUTION_ID", "TSUBAME_JOB", "TSUBAME_SERVER"]
    if interpreter.endswith("python3"):
        script = (
            "import base64, os, sys\n"
            f"for name in {names!r}:\n"
            "    value = os.environb[name.encode()]\n"
            "    print(name, base64.b64encode(value).decode())\n"
        )
    else:
        script = (
            f"for name in {' '.join(names)}; do\n"
            '  eval "value=\\${$name}"\n'
            '  printf "%s %s\\n" "$name" "$(printf %s "$value" | base64 -w0)"\n'
            "done\n"
        )
    job = text_job(make_job, server, script, HOSTILE, interpreter=interpreter, name="deploy")
    execution = run(job, parameters=HOSTILE)
    assert execution.status == Status.SUCCEEDED, output(execution)
    received = {
        name: base64.b64decode(encoded).decode()
        for name, encoded in (line.split(" ") for line in output(execution).decode().splitlines())
    }
    assert received == {
        **HOSTILE,
        "TSUBAME_EXECUTION_ID": str(execution.pk),
        "TSUBAME_JOB": "deploy",
        "TSUBAME_SERVER": "web-1",
    }


def test_typed_values_arrive_as_text(make_server, make_job) -> None:
    job = make_job(
        'printf "%s|%s|%s|%s" "$DRY_RUN" "$REGIONS" "$REPLICAS" "${UNSET-unset}"', [make_server()]
    )
    job.parameters = clean_definitions(
        [
            {"name": "DRY_RUN", "type": "boolean"},
            {"name": "REGIONS", "type": "multichoice", "choices": ["eu", "us", "ap"]},
            {"name": "REPLICAS", "type": "integer"},
            {"name": "UNSET"},
        ]
    )
    job.save()
    execution = run(job, parameters={"DRY_RUN": False, "REGIONS": ["us", "eu"], "REPLICAS": 3})
    assert output(execution) == b"false|us\neu|3|unset"


def test_a_job_receives_only_the_secret_variables_it_lists(make_server, make_job, team) -> None:
    listed = SecretVariable.objects.create(team=team, name="DB_PASSWORD", value="pw-listed-1")
    SecretVariable.objects.create(team=team, name="OTHER_SECRET", value="pw-other-2")
    job = make_job('printf "%s|%s" "$DB_PASSWORD" "${OTHER_SECRET-absent}"', [make_server()])
    job.secret_variables.set([listed])
    execution = run(job)
    # Received, and masked in what is stored.
    assert output(execution) == b"***|absent"


def test_a_deleted_secret_variable_fails_the_run_with_its_name(make_server, make_job, team) -> None:
    variable = SecretVariable.objects.create(team=team, name="DB_PASSWORD", value="pw-12345")
    job = make_job("echo should not run", [make_server(), make_server()])
    job.secret_variables.set([variable])
    execution = start(job)
    variable.delete()
    runner.run_execution(execution.pk)
    execution.refresh_from_db()
    assert execution.status == Status.FAILED
    errors = set(execution.host_runs.values_list("error", flat=True))
    assert errors == {"the secret variables DB_PASSWORD no longer exist"}
    assert not LogChunk.objects.filter(execution=execution).exists()


# A multi-line secret with every character a shell treats specially.
TOKEN = "t0ken-line-one 'single' \"double\" $dollar \\back\nsecond-line-of-token\nthird"
PASSWORD = "pa55-w0rd!-xyz"

LEAKY_SCRIPT = r"""
echo "raw: $TOKEN"
echo "password: $DB_PASSWORD"
printf '%s' "$TOKEN" | base64
printf '%s' "$DB_PASSWORD" | base64
printf '%q\n' "$TOKEN"
python3 -c '
import json, os, urllib.parse
print(json.dumps(os.environ["TOKEN"]), urllib.parse.quote(os.environ["TOKEN"], safe=""))
'
set -x
echo "$TOKEN" "$DB_PASSWORD" > /dev/null
set +x
# Byte by byte with pauses: every byte is its own SSH packet and its own read.
python3 -c '
import os, sys, time
for byte in os.environ["DB_PASSWORD"].encode() + b" / " + os.environ["TOKEN"].encode():
    sys.stdout.buffer.write(bytes([byte])); sys.stdout.flush(); time.sleep(0.02)
'
echo
ps -eo args > "$OUT/ps.txt"
cat /proc/[0-9]*/cmdline > "$OUT/cmdline.txt" 2>/dev/null
echo "the end: $TOKEN" >&2
exit 3
"""


def forms(secret: str) -> list[str]:
    """What a leak of `secret` would look like in a log, as this test's script prints it."""
    lines = [line for line in secret.split("\n") if len(line) >= 4]
    found = [secret, *lines, base64.b64encode(secret.encode()).decode()]
    # What `base64` prints: wrapped at 76 columns.
    wrapped = subprocess.run(["base64"], input=secret.encode(), capture_output=True).stdout
    found += [line for line in wrapped.decode().splitlines() if len(line) >= 4]
    found += [shlex.quote(secret), json.dumps(secret)[1:-1]]
    return found


@pytest.fixture
def leaky_run(make_server, make_job, team, shared_dir, caplog):
    caplog.set_level(logging.DEBUG)
    job = make_job(LEAKY_SCRIPT, [make_server(name="web-1")], name="leaky")
    job.parameters = clean_definitions(
        [{"name": "TOKEN", "type": "secret"}, {"name": "OUT", "type": "string"}]
    )
    job.save()
    job.secret_variables.set(
        [SecretVariable.objects.create(team=team, name="DB_PASSWORD", value=PASSWORD)]
    )
    execution = run(job, parameters={"TOKEN": TOKEN, "OUT": str(shared_dir)})
    return execution, shared_dir


def assert_masked(data: str, where: str) -> None:
    for secret in (TOKEN, PASSWORD):
        for form in forms(secret):
            assert form not in data, f"{where} shows {form!r}"
    assert "t0ken" not in data, where
    assert "pa55" not in data, where


def test_secrets_never_reach_what_is_stored(leaky_run) -> None:
    execution, _ = leaky_run
    assert execution.status == Status.FAILED
    stored = output(execution).decode()
    assert_masked(stored, "the stored output")
    # The script's own text around the secrets is intact.
    assert "raw: ***\npassword: ***\n" in stored
    assert "the end: ***" in output(execution, stream="stderr").decode()
    assert stored.count("***") >= 8
    host_run = HostRun.objects.get(execution=execution)
    assert_masked(host_run.error + execution.summary, "the run's messages")
    assert Execution.objects.get(pk=execution.pk).secret_parameters is None


def test_secrets_never_reach_the_api_the_download_or_the_live_stream(
    leaky_run, make_member, team
) -> None:
    execution, _ = leaky_run
    operator = make_member(team, Role.OPERATOR)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {ApiToken.issue(operator, 'test')[1]}")
    log = api.get(f"/api/v1/executions/{execution.pk}/log/?limit=1000").content.decode()
    assert_masked(log, "the log API")
    assert "***" in log
    raw = api.get(f"/api/v1/executions/{execution.pk}/log/raw/")
    assert_masked(b"".join(raw.streaming_content).decode(), "the raw download")
    detail = api.get(f"/api/v1/executions/{execution.pk}/").content.decode()
    assert_masked(detail, "the execution API")
    search = api.get("/api/v1/executions/", {"q": "pa55-w0rd"}).json()
    assert search["count"] == 0
    _, _, messages = async_to_sync(listen)(
        f"/ws/executions/{execution.pk}/", session_headers(operator)
    )
    live = "".join(chunk["text"] for chunk in chunks_of(messages))
    assert_masked(live, "the live stream")
    assert "raw: ***" in live


def test_secrets_never_reach_the_remote_process_list_or_the_worker_log(leaky_run, caplog) -> None:
    _, shared = leaky_run
    listing = Path(shared, "ps.txt").read_text()
    assert "ps -eo args" in listing  # the listing was taken while the script ran
    assert_masked(listing, "the remote `ps` output")
    assert_masked(Path(shared, "cmdline.txt").read_bytes().decode(errors="replace"), "cmdline")
    assert_masked(caplog.text, "the worker's log")


def test_no_file_on_the_server_holds_a_value(make_server, make_job, in_background) -> None:
    job = make_job('echo started; sleep 3; echo "$TOKEN" > /dev/null', [make_server()])
    job.parameters = clean_definitions([{"name": "TOKEN", "type": "secret"}])
    job.save()
    probe = f"file-probe-{uuid.uuid4().hex}"  # made now: no file (this one) has it already
    execution = start(job, parameters={"TOKEN": probe})
    in_background(lambda: runner.run_execution(execution.pk))
    # The script has its environment once it printed; the value is then wherever it will be.
    wait_until(lambda: LogChunk.objects.filter(execution=execution).exists(), 30, "the start")
    # Files written since the run began: other checkouts and databases in /tmp cannot hold it.
    found = subprocess.run(
        ["find", "/tmp", "/var/tmp", "/var/lib/tsubame-ssh", "-type", "f", "-mmin", "-2",
         "-exec", "grep", "-l", probe, "{}", "+"],
        capture_output=True,
        text=True,
    )  # fmt: skip
    assert found.stdout == ""


def test_a_secret_variable_renamed_onto_a_parameter_fails_the_run(
    make_server, make_job, team
) -> None:
    variable = SecretVariable.objects.create(team=team, name="DB_PASSWORD", value="pw-12345")
    job = text_job(make_job, make_server(), "echo should not run", ["N"])
    job.secret_variables.set([variable])
    # Renamed around validation (it refuses this), as a row changed in the database would be.
    SecretVariable.objects.filter(pk=variable.pk).update(name="N")
    execution = start(job, parameters={"N": "7"})
    runner.run_execution(execution.pk)
    execution.refresh_from_db()
    assert execution.status == Status.FAILED
    assert execution.host_runs.get().error == "N: both a parameter and a secret variable"
    assert not LogChunk.objects.filter(execution=execution).exists()
