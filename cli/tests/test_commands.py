"""The listing commands, and what every command does with a mistake: one line, exit 2, and
never the token."""

from __future__ import annotations

import pytest

from executions.models import Status
from executions.tests.helpers import run
from jobs.parameters import clean_definitions

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(300)]


def test_jobs_servers_executions_and_status_by_name_or_id(cli, make_server, make_job, tmp_path):
    web = make_server(name="web-1")
    deploy = make_job("echo hi", [web], name="deploy")
    cleanup = make_job("exit 1", [web], name="cleanup")
    done = run(deploy)

    # From the configuration file when the environment says nothing.
    config = tmp_path / "tsubame.toml"
    config.write_text(f'url = "{cli.env["TSUBAME_URL"]}"\ntoken = "{cli.token}"\n')
    jobs = cli.run("jobs", TSUBAME_URL="", TSUBAME_TOKEN="", TSUBAME_CONFIG=str(config))
    assert jobs.returncode == 0, jobs.stderr
    assert [line.split()[:3] for line in jobs.stdout.splitlines()] == [
        ["ID", "NAME", "TEAM"],
        [str(cleanup.pk), "cleanup", "ops"],
        [str(deploy.pk), "deploy", "ops"],
    ]
    servers = cli.run("servers")
    assert servers.stdout.splitlines()[1].split()[:3] == [str(web.pk), "web-1", "ops"]

    for job in ("deploy", str(deploy.pk)):
        listed = cli.run("executions", "--job", job, "--status", "succeeded")
        assert [line.split()[:3] for line in listed.stdout.splitlines()[1:]] == [
            [str(done.pk), "deploy", "succeeded"]
        ]
    assert cli.run("executions", "--status", "failed").stdout.splitlines()[1:] == []

    status = cli.run("status", str(done.pk))
    assert status.returncode == 0
    assert "web-1  succeeded  0" in status.stdout
    failed = run(make_job("exit 7", [web], name="broken"))
    assert failed.status == Status.FAILED
    assert cli.run("status", str(failed.pk)).returncode == 1


def one_line_error(result) -> str:
    assert result.returncode == 2, result
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("tsubame: ")
    return lines[0]


def test_mistakes_are_one_line_and_exit_2_without_the_token(cli, make_server, make_job):
    make_job(
        "echo $COUNT",
        [make_server()],
        name="count",
        parameters=clean_definitions(
            [
                {"name": "COUNT", "type": "integer", "required": True},
                {"name": "KEY", "type": "secret"},
            ]
        ),
    )
    wrong_token = cli.token[:-4] + "abcd"
    refused = cli.run("jobs", TSUBAME_TOKEN=wrong_token)
    assert one_line_error(refused) == "tsubame: the server refused the token: Invalid API token."
    refused = cli.run("run", "count", "--follow", "--token", wrong_token)
    assert wrong_token not in one_line_error(refused)

    assert one_line_error(cli.run("run", "nightly")) == "tsubame: no job named 'nightly'"
    assert one_line_error(cli.run("run", "999")) == "tsubame: no job with id 999"
    assert one_line_error(cli.run("run", "count", "--param", "COUNT=many")) == (
        "tsubame: parameters.COUNT: The value must be a number."
    )
    assert "never on the command line" in one_line_error(
        cli.run("run", "count", "--param", "COUNT=1", "--param", f"KEY={cli.token}")
    )
    for command in (["status", "12345"], ["logs", "12345", "--follow"], ["cancel", "12345"]):
        assert one_line_error(cli.run(*command)) == "tsubame: no execution 12345"
    unreachable = cli.run("jobs", TSUBAME_URL="http://127.0.0.1:9")
    assert one_line_error(unreachable).startswith("tsubame: cannot reach http://127.0.0.1:9")
    usage = cli.run("run", "count", "--bogus", "--token", cli.token)
    assert usage.returncode == 2
    assert cli.token not in usage.stderr
    for result in (refused, unreachable):
        assert cli.token not in result.stderr
