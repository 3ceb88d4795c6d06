"""Jobs, servers and parameters as the command line names them."""

from __future__ import annotations

import getpass
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TextIO

from tsubame_cli.api import Api, ApiError
from tsubame_cli.config import UsageError

TRUE = {"true", "yes", "on", "1"}
FALSE = {"false", "no", "off", "0"}
ENV_PREFIX = "TSUBAME_PARAM_"


def find(api: Api, kind: str, ref: str, *, team: int | None = None) -> dict[str, Any]:
    """A job or server by id, or by exact name (among `team`'s when given)."""
    what = kind.rstrip("s")
    if ref.isdigit():
        return get(api, f"/api/v1/{kind}/{ref}/", f"no {what} with id {ref}")
    # The API's name filter matches parts of names: keep the exact ones.
    found = [
        item for item in api.every(f"/api/v1/{kind}/", name=ref, team=team) if item["name"] == ref
    ]
    if not found:
        raise UsageError(f"no {what} named {ref!r}")
    if len(found) > 1:
        ids = ", ".join(str(item["id"]) for item in found)
        raise UsageError(f"{len(found)} {kind} are named {ref!r} (ids {ids}): give the id")
    return found[0]


@contextmanager
def missing(message: str) -> Iterator[None]:
    """A 404 (no such object, or not ours to see) as a UsageError with `message`."""
    try:
        yield
    except ApiError as exc:
        if exc.status == 404:
            raise UsageError(message) from None
        raise


def get(api: Api, path: str, message: str) -> dict[str, Any]:
    with missing(message):
        return api.get(path)


def execution(api: Api, execution_id: int) -> dict[str, Any]:
    return get(api, f"/api/v1/executions/{execution_id}/", f"no execution {execution_id}")


def team_names(api: Api) -> dict[int, str]:
    return {team["id"]: team["name"] for team in api.every("/api/v1/teams/")}


def host_run(execution: Mapping[str, Any], name: str) -> int:
    for run in execution["host_runs"]:
        if name in (run["server_name"], str(run["server"])):
            return run["id"]
    names = ", ".join(run["server_name"] for run in execution["host_runs"])
    raise UsageError(f"execution {execution['id']} did not run on {name!r} (its hosts: {names})")


def typed(definition: Mapping[str, Any], values: list[str]) -> Any:
    """A value given as text, as the JSON type the parameter takes; left as text when it
    is not one, for the server to refuse with its own message."""
    kind = definition["type"]
    if kind == "multichoice":
        return values
    value = values[-1]
    if kind == "integer":
        try:
            return int(value)
        except ValueError:
            return value
    if kind == "number":
        try:
            number = float(value)
        except ValueError:
            return value
        return int(number) if number.is_integer() and "." not in value else number
    if kind == "boolean":
        if value.lower() in TRUE:
            return True
        if value.lower() in FALSE:
            return False
    return value


def parameter_values(
    job: Mapping[str, Any], given: list[str] | None, environ: Mapping[str, str], stdin: TextIO
) -> dict[str, Any]:
    """Values by name from `--param NAME=VALUE`, else TSUBAME_PARAM_<NAME>, else (secrets, on
    a terminal) a prompt that does not echo. A secret is never taken from the command line,
    where other users of the machine can read it (ps, /proc)."""
    definitions = {definition["name"]: definition for definition in job["parameters"]}
    texts: dict[str, list[str]] = {}
    for item in given or []:
        name, equals, value = item.partition("=")
        if not equals:
            raise UsageError(f"--param takes NAME=VALUE, not {item!r}")
        if definitions.get(name, {}).get("type") == "secret":
            raise UsageError(
                f"{name} is a secret parameter: set {ENV_PREFIX}{name} or answer the prompt, "
                "never on the command line"
            )
        texts.setdefault(name, []).append(value)
    for name, definition in definitions.items():
        if name in texts:
            continue
        if (value := environ.get(ENV_PREFIX + name)) is not None:
            multichoice = definition["type"] == "multichoice"
            texts[name] = value.splitlines() if multichoice else [value]
        elif definition["type"] == "secret" and stdin.isatty():
            # An empty answer gives no value: the server then says whether one was required.
            texts[name] = [getpass.getpass(f"{definition.get('label') or name} (secret): ")]
            if not texts[name][0]:
                del texts[name]
    return {
        name: typed(definitions.get(name, {"type": "string"}), values)
        for name, values in texts.items()
    }
