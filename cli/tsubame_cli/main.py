"""The `tsubame` command: run jobs, follow their output, read statuses, over the public API.

Exit status: 0 succeeded, 1 failed (also skipped or missed: the run did not succeed),
2 usage or connection error, 3 cancelled, 4 timed out, 5 lost; 130 when Ctrl-C detaches from
a run that goes on.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from tsubame_cli import config, resources
from tsubame_cli.api import Api, ApiError
from tsubame_cli.follow import Follower, FollowError
from tsubame_cli.render import Printer

EXIT_CODES = {
    "succeeded": 0,
    "failed": 1,
    "skipped": 1,
    "missed": 1,
    "cancelled": 3,
    "timed_out": 4,
    "lost": 5,
}
EXIT_USAGE = 2
EXIT_DETACHED = 130
READ_BLOCK = 64 * 1024


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # argparse repeats values it could not use: keep a token among them out of sight.
        self.print_usage(sys.stderr)
        fail(message)


# The token, wherever it came from: no message may show it.
_secrets: set[str] = set()


def redact(text: str) -> str:
    for secret in _secrets:
        text = text.replace(secret, "***")
    return text


def fail(message: str) -> NoReturn:
    print(f"tsubame: {redact(message)}".replace("\n", " "), file=sys.stderr)
    raise SystemExit(EXIT_USAGE)


def outcome_code(status: str) -> int:
    """The exit status for a run's status; 0 for one still waiting, queued or running."""
    return EXIT_CODES.get(status, 0)


def print_table(rows: list[dict[str, Any]], columns: Sequence[tuple[str, Callable]]) -> None:
    cells = [
        ["" if (value := get(row)) is None else str(value) for _, get in columns] for row in rows
    ]
    widths = [
        max([len(title), *(len(line[i]) for line in cells)]) for i, (title, _) in enumerate(columns)
    ]
    for line in [[title for title, _ in columns], *cells]:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        )


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2))


# Commands -----------------------------------------------------------------------------------


def cmd_jobs(api: Api, args: argparse.Namespace) -> int:
    jobs = list(api.every("/api/v1/jobs/"))
    if args.json:
        print_json(jobs)
        return 0
    teams = resources.team_names(api)
    print_table(
        jobs,
        [
            ("ID", lambda job: job["id"]),
            ("NAME", lambda job: job["name"]),
            ("TEAM", lambda job: teams.get(job["team"], job["team"])),
            ("PARAMETERS", lambda job: " ".join(p["name"] for p in job["parameters"])),
        ],
    )
    return 0


def cmd_servers(api: Api, args: argparse.Namespace) -> int:
    servers = list(api.every("/api/v1/servers/"))
    if args.json:
        print_json(servers)
        return 0
    teams = resources.team_names(api)
    print_table(
        servers,
        [
            ("ID", lambda server: server["id"]),
            ("NAME", lambda server: server["name"]),
            ("TEAM", lambda server: teams.get(server["team"], server["team"])),
            ("ADDRESS", lambda server: f"{server['username']}@{server['host']}:{server['port']}"),
            ("TAGS", lambda server: ",".join(server["tags"])),
            ("LAST CHECK", lambda server: server["last_check_status"]),
        ],
    )
    return 0


def cmd_executions(api: Api, args: argparse.Namespace) -> int:
    job = resources.find(api, "jobs", args.job)["id"] if args.job else None
    page = api.get("/api/v1/executions/", job=job, status=args.status, page_size=args.limit)
    if args.json:
        print_json(page["results"])
        return 0
    print_table(page["results"], EXECUTION_COLUMNS)
    return 0


EXECUTION_COLUMNS: list[tuple[str, Callable]] = [
    ("ID", lambda run: run["id"]),
    ("JOB", lambda run: run["job_name"]),
    ("STATUS", lambda run: run["status"]),
    ("CREATED", lambda run: run["created_at"]),
    ("DURATION", lambda run: f"{run['duration']:.1f} s" if run["duration"] is not None else ""),
    ("HOSTS", lambda run: " ".join(h["server_name"] for h in run["host_runs"])),
    ("SUMMARY", lambda run: run["summary"]),
]


def cmd_status(api: Api, args: argparse.Namespace) -> int:
    execution = resources.execution(api, args.execution)
    if args.json:
        print_json(execution)
    else:
        print_table([execution], EXECUTION_COLUMNS)
        print()
        print_table(
            execution["host_runs"],
            [
                ("HOST", lambda run: run["server_name"]),
                ("STATUS", lambda run: run["status"]),
                ("EXIT", lambda run: run["exit_code"]),
                ("ERROR", lambda run: run["error"]),
            ],
        )
    return outcome_code(execution["status"])


def cmd_cancel(api: Api, args: argparse.Namespace) -> int:
    with resources.missing(f"no execution {args.execution}"):
        execution = api.post(f"/api/v1/executions/{args.execution}/cancel/")
    status = execution["status"]
    if status in EXIT_CODES:
        print(f"execution {execution['id']}: {status}")
    else:
        # The worker stops it within seconds; its status says so once it has.
        print(f"execution {execution['id']}: cancel requested (it was {status})")
    return 0


def cmd_run(api: Api, args: argparse.Namespace) -> int:
    job = resources.find(api, "jobs", args.job)
    body: dict[str, Any] = {
        "parameters": resources.parameter_values(job, args.param, os.environ, sys.stdin)
    }
    if args.server:
        body["servers"] = [
            resources.find(api, "servers", name, team=job["team"])["id"] for name in args.server
        ]
    if args.tag:
        body["tags"] = args.tag
    execution = api.post(f"/api/v1/jobs/{job['id']}/run/", body)
    if not args.follow:
        if args.json:
            print_json(execution)
        else:
            print(f"execution {execution['id']} of {job['name']}: {execution['status']}")
        return 0
    print(
        f"execution {execution['id']} of {job['name']}: {execution['status']} "
        f"(re-attach: tsubame logs {execution['id']} --follow)",
        file=sys.stderr,
    )
    # With --json, stdout is for the final execution only: the output goes to stderr.
    return follow(api, execution, args, to_stderr=args.json)


def cmd_logs(api: Api, args: argparse.Namespace) -> int:
    execution = resources.execution(api, args.execution)
    host = resources.host_run(execution, args.host) if args.host else None
    if args.follow:
        return follow(api, execution, args, only_host=host)
    if args.raw:
        path = f"/api/v1/executions/{execution['id']}/log/raw/"
        with api.stream(path, host_run=host) as response:
            while block := response.read(READ_BLOCK):
                sys.stdout.buffer.write(block)
        sys.stdout.buffer.flush()
        return 0
    printer = make_printer(execution, args, only_host=host)
    after = -1
    while True:
        page = api.get(
            f"/api/v1/executions/{execution['id']}/log/", after=after, host_run=host, limit=1000
        )
        for chunk in page["chunks"]:
            printer.chunk(chunk)
        if page["complete"] or page["next_after"] == after:
            break
        after = page["next_after"]
    printer.close()
    return 0


# Following ------------------------------------------------------------------------------------


def make_printer(
    execution: dict[str, Any],
    args: argparse.Namespace,
    *,
    only_host: int | None = None,
    to_stderr: bool = False,
) -> Printer:
    hosts = {run["id"]: run["server_name"] for run in execution["host_runs"]}
    out = sys.stderr.buffer if to_stderr else sys.stdout.buffer
    return Printer(
        out,
        sys.stderr.buffer,
        hosts,
        raw=getattr(args, "raw", False),
        prefixed=len(hosts) > 1 and only_host is None,
        colour=out.isatty(),
        only_host=only_host,
    )


def follow(
    api: Api,
    execution: dict[str, Any],
    args: argparse.Namespace,
    *,
    only_host: int | None = None,
    to_stderr: bool = False,
) -> int:
    printer = make_printer(execution, args, only_host=only_host, to_stderr=to_stderr)
    follower = Follower(api, execution["id"], printer)
    cancelled = False
    while True:
        try:
            status = follower.run()
            break
        except KeyboardInterrupt:
            printer.close()
            if not args.cancel_on_interrupt or cancelled:
                print(
                    f"\ndetached: execution {execution['id']} goes on; re-attach with "
                    f"`tsubame logs {execution['id']} --follow`",
                    file=sys.stderr,
                )
                return EXIT_DETACHED
            print(f"\ncancelling execution {execution['id']}...", file=sys.stderr)
            api.post(f"/api/v1/executions/{execution['id']}/cancel/")
            cancelled = True  # a second Ctrl-C detaches
    printer.close()
    outcome = status["execution"]
    if getattr(args, "json", False):
        print_json(api.get(f"/api/v1/executions/{execution['id']}/"))
    failed_hosts = [
        f"{run['server']}: {run['status']}"
        + (f" (exit {run['exit_code']})" if run["exit_code"] not in (None, 0) else "")
        for run in status["host_runs"]
        if run["status"] != "succeeded"
    ]
    summary = f" ({outcome['summary']})" if outcome["summary"] else ""
    hosts = (
        f"; {', '.join(failed_hosts)}" if failed_hosts and outcome["status"] != "succeeded" else ""
    )
    print(f"execution {outcome['id']}: {outcome['status']}{summary}{hosts}", file=sys.stderr)
    return outcome_code(outcome["status"])


# Command line --------------------------------------------------------------------------------


def parser() -> Parser:
    # --url and --token before or after the command; given after, they win.
    server = argparse.ArgumentParser(add_help=False, argument_default=argparse.SUPPRESS)
    server.add_argument("--url", help="the server, e.g. https://tsubame.example.com (TSUBAME_URL)")
    server.add_argument("--token", help="an API token (TSUBAME_TOKEN; better than this flag)")
    top = Parser(
        prog="tsubame", description="Run tsubame jobs and follow their output.", parents=[server]
    )
    commands = top.add_subparsers(dest="command", required=True, parser_class=Parser)

    def command(name: str, handler: Callable, help: str) -> Parser:
        sub = commands.add_parser(name, help=help, description=help, parents=[server])
        sub.set_defaults(handler=handler)
        return sub

    def following(sub: Parser) -> None:
        sub.add_argument("--follow", "-f", action="store_true", help="print output until the end")
        sub.add_argument(
            "--cancel-on-interrupt",
            action="store_true",
            help="Ctrl-C cancels the run instead of detaching from it",
        )

    run = command("run", cmd_run, "start a job")
    run.add_argument("job", help="job name or id")
    run.add_argument("--server", action="append", help="run on this server (name or id)")
    run.add_argument("--tag", action="append", help="run on the servers with this tag")
    run.add_argument(
        "--param",
        action="append",
        metavar="NAME=VALUE",
        help="a parameter's value (repeat for a multichoice); also TSUBAME_PARAM_<NAME>",
    )
    run.add_argument("--json", action="store_true", help="print the execution as JSON")
    following(run)

    logs = command("logs", cmd_logs, "print an execution's output")
    logs.add_argument("execution", type=int)
    logs.add_argument("--host", help="only this host's output (server name)")
    logs.add_argument("--raw", action="store_true", help="the exact stored bytes, no prefixes")
    following(logs)

    status = command("status", cmd_status, "show an execution's status")
    status.add_argument("execution", type=int)
    status.add_argument("--json", action="store_true")

    cancel = command("cancel", cmd_cancel, "cancel an execution")
    cancel.add_argument("execution", type=int)

    command("jobs", cmd_jobs, "list jobs").add_argument("--json", action="store_true")
    command("servers", cmd_servers, "list servers").add_argument("--json", action="store_true")

    executions = command("executions", cmd_executions, "list recent executions")
    executions.add_argument("--job", help="job name or id")
    executions.add_argument("--status", help="e.g. running, failed")
    executions.add_argument("--limit", type=int, default=50)
    executions.add_argument("--json", action="store_true")
    return top


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    for position, word in enumerate(argv):
        if word == "--token" and position + 1 < len(argv):
            _secrets.add(argv[position + 1])
        elif word.startswith("--token="):
            _secrets.add(word.removeprefix("--token="))
    args = parser().parse_args(argv)
    try:
        settings = config.load(getattr(args, "url", None), getattr(args, "token", None))
        _secrets.add(settings.token)
        return args.handler(Api(settings), args)
    except (config.UsageError, ApiError, FollowError) as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        return EXIT_DETACHED
    except BrokenPipeError:
        # The reader went away (`| head`): stop quietly, as other commands do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
