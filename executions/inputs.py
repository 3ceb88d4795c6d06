"""What a run's script receives, read by the worker when it starts the run: the environment
variables for each host, and the secret values that must be masked in its output."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from executions.masking import SecretMasker
from executions.models import Execution
from jobs import parameters
from jobs.models import SecretVariable
from tsubame.crypto import Undecryptable


class InputError(Exception):
    """The run cannot be given what it needs; the message is meant for the user."""


@dataclass(frozen=True)
class RunInputs:
    environment: dict[str, str]
    secrets: list[str] = field(default_factory=list)

    def masker(self) -> SecretMasker:
        return SecretMasker(self.secrets)

    def for_host(self, server_name: str) -> dict[str, str]:
        return {**self.environment, "TSUBAME_SERVER": server_name}


def run_inputs(execution: Execution) -> RunInputs:
    """The environment every host of `execution` gets (TSUBAME_SERVER is added per host).

    Secret variables are read now, as they are when the run starts; one that was deleted or
    cannot be decrypted fails the run rather than running the script without it.
    """
    environment = {
        name: parameters.environment_value(value)
        for name, value in execution.parameters.items()
        if value is not None
    }
    secrets = _secret_parameters(execution)
    variables = _secret_variables(execution)
    clash = sorted(set(variables) & set(execution.parameters))
    if clash:
        # Renamed since the job was saved: neither value may silently win.
        raise InputError(f"{', '.join(clash)}: both a parameter and a secret variable")
    secrets |= variables
    environment |= secrets
    environment |= {
        "TSUBAME_EXECUTION_ID": str(execution.pk),
        "TSUBAME_JOB": execution.job_name,
    }
    size = sum(len(f"{name}={value}".encode()) for name, value in environment.items())
    if size > parameters.MAX_ENVIRONMENT_BYTES:
        raise InputError(
            f"the parameters and secret variables come to {size} bytes; a run takes at most "
            f"{parameters.MAX_ENVIRONMENT_BYTES}"
        )
    return RunInputs(environment, [value for value in secrets.values() if value])


def _secret_parameters(execution: Execution) -> dict[str, str]:
    stored = execution.secret_parameters
    if not stored:
        return {}
    if isinstance(stored, Undecryptable):
        raise InputError(
            "the secret parameters of this run cannot be decrypted with the configured "
            "ENCRYPTION_KEYS"
        )
    return {name: parameters.environment_value(v) for name, v in json.loads(stored).items()}


def _secret_variables(execution: Execution) -> dict[str, str]:
    names = execution.secret_variables
    if not names:
        return {}
    found = dict(
        SecretVariable.objects.filter(team=execution.team_id, name__in=names).values_list(
            "name", "value"
        )
    )
    missing = sorted(set(names) - set(found))
    if missing:
        raise InputError(f"the secret variables {', '.join(missing)} no longer exist")
    broken = sorted(name for name, value in found.items() if isinstance(value, Undecryptable))
    if broken:
        raise InputError(
            f"the secret variables {', '.join(broken)} cannot be decrypted with the configured "
            "ENCRYPTION_KEYS; set them again or restore the old key"
        )
    return {name: value or "" for name, value in found.items()}
