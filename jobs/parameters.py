"""Job parameters: their definitions, and the one check of the values a run is given.

Every face that starts a run (the UI's run dialog, the API's run action, the admin, and
later schedules, webhooks and the CLI) goes through `executions.services.start_execution`,
which calls `clean_values` here: nowhere else decides whether a value is acceptable.

Values reach the script as environment variables (`environment`), so a parameter's name is
an environment variable name, and never one that the shell, the loader or tsubame itself
relies on: a run that could set PATH, IFS or LD_PRELOAD on the server would be a run whose
operator controls more than the script's inputs.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

import regex
from django.core.exceptions import ValidationError

TYPES = ("string", "text", "integer", "number", "boolean", "choice", "multichoice", "secret")
TEXT_TYPES = ("string", "text", "secret")
NUMBER_TYPES = ("integer", "number")
CHOICE_TYPES = ("choice", "multichoice")

NAME = re.compile(r"[A-Z][A-Z0-9_]{0,63}")
# Names the shell, the dynamic loader, locale handling or the remote wrapper read: a value for
# one of them would change how everything on the server behaves, not just the script's input.
# bash also rewrites or refuses some of its own when they arrive exported (read-only ones such
# as UID fail the run), so those are refused here rather than silently changed there. Those
# that make an interpreter or a tool load code (PYTHONPATH, PERL5OPT, NODE_OPTIONS, GIT_SSH_
# COMMAND...) would let whoever types the value run code before the script does.
RESERVED_NAMES = frozenset(
    {
        "BASHOPTS",
        "BASHPID",
        "BROWSER",
        "CDPATH",
        "COLUMNS",
        "COMP_WORDBREAKS",
        "DIRSTACK",
        "EDITOR",
        "ENV",
        "EPOCHREALTIME",
        "EPOCHSECONDS",
        "EUID",
        "EXINIT",
        "FPATH",
        "FUNCNAME",
        "GCONV_PATH",
        "GIT_CONFIG",
        "GIT_CONFIG_GLOBAL",
        "GIT_CONFIG_SYSTEM",
        "GIT_EXEC_PATH",
        "GIT_SSH_COMMAND",
        "GLOBIGNORE",
        "GROUPS",
        "HISTCMD",
        "HISTFILE",
        "HOME",
        "HOSTALIASES",
        "HOSTNAME",
        "IFS",
        "JAVA_TOOL_OPTIONS",
        "JDK_JAVA_OPTIONS",
        "LANG",
        "LANGUAGE",
        "LESSCLOSE",
        "LESSOPEN",
        "LINENO",
        "LINES",
        "LOCALDOMAIN",
        "LOCPATH",
        "LOGNAME",
        "MAIL",
        "MAILCHECK",
        "MAILPATH",
        "MANPAGER",
        "NLSPATH",
        "NODE_OPTIONS",
        "NODE_PATH",
        "OLDPWD",
        "OPTARG",
        "OPTERR",
        "OPTIND",
        "PAGER",
        "PATH",
        "PERL5DB",
        "PERL5LIB",
        "PERL5OPT",
        "PERLLIB",
        "PIPESTATUS",
        "POSIXLY_CORRECT",
        "PPID",
        "PROMPT_COMMAND",
        "PS1",
        "PS2",
        "PS3",
        "PS4",
        "PWD",
        "PYTHONHOME",
        "PYTHONINSPECT",
        "PYTHONPATH",
        "PYTHONSTARTUP",
        "RANDOM",
        "RES_OPTIONS",
        "RUBYLIB",
        "RUBYOPT",
        "SECONDS",
        "SHELL",
        "SHELLOPTS",
        "SHLVL",
        "SRANDOM",
        "SSH_ASKPASS",
        "SUDO_ASKPASS",
        "TERM",
        "TERMCAP",
        "TERMINFO",
        "TMOUT",
        "TMPDIR",
        "UID",
        "USER",
        "VIMINIT",
        "VISUAL",
        "ZDOTDIR",
    }
)
RESERVED_PREFIXES = ("BASH_", "DYLD_", "LC_", "LD_", "MALLOC_", "SSH_", "TSUBAME_")

# Bounds that keep a run's input (sent to every host over SSH, stored with the execution)
# small whatever a caller sends.
MAX_PARAMETERS = 50
MAX_VALUE_BYTES = 64 * 1024
# A secret is masked in output in many forms per line (executions.masking), which costs the
# worker time to prepare: a secret is a key or a password, not a document.
MAX_SECRET_BYTES = 16 * 1024
# All the values a run gets, parameters and secret variables: well under what Linux lets a
# process start with (each variable at most 128 KiB, all at most ~2 MiB with the rest).
MAX_ENVIRONMENT_BYTES = 256 * 1024
# How long a value may take to check against a pattern: a pattern that backtracks
# catastrophically must not hold the web process that checks it.
PATTERN_SECONDS = 0.1
MAX_CHOICES = 200
MAX_CHOICE_LENGTH = 200
MAX_PATTERN_LENGTH = 500
MAX_LABEL_LENGTH = 100
MAX_HELP_LENGTH = 500

# Every key a definition may have, with the value it takes when left out.
DEFINITION_DEFAULTS: dict[str, Any] = {
    "name": "",
    "label": "",
    "help": "",
    "type": "string",
    "required": False,
    "default": None,
    "choices": [],
    "pattern": "",
    "min": None,
    "max": None,
    "max_length": None,
}


def validate_name(name: object) -> None:
    """An environment variable name that no system or shell variable can be confused with."""
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise ValidationError(
            f"{name!r} is not a valid name: use capital letters, digits and _, starting with "
            "a letter, at most 64 characters (e.g. APP_VERSION).",
            code="invalid_name",
        )
    if name in RESERVED_NAMES or name.startswith(RESERVED_PREFIXES):
        raise ValidationError(
            f"{name} is a name the shell or the system relies on; choose another one "
            f"(e.g. APP_{name}).",
            code="reserved_name",
        )


def _text(value: object, what: str, limit: int) -> str:
    if not isinstance(value, str):
        raise ValidationError(f"{what} must be text.")
    if "\x00" in value:
        raise ValidationError(f"{what} must not contain null characters.")
    if len(value) > limit:
        raise ValidationError(f"{what} can be at most {limit} characters.")
    try:
        value.encode()
    except UnicodeEncodeError:
        # JSON can carry a lone surrogate ("\ud800"), which is no text a server can receive.
        raise ValidationError(f"{what} must be valid Unicode text.") from None
    return value


def validate_secret_value(value: str) -> None:
    """A secret's size, for secret parameters and secret variables alike."""
    size = len(value.encode("utf-8", "surrogatepass"))
    if size > MAX_SECRET_BYTES:
        raise ValidationError(
            f"A secret can be at most {MAX_SECRET_BYTES} bytes; this one is {size}.",
            code="secret_too_large",
        )


def _number(value: object, what: str, *, integer: bool) -> int | float:
    # bool is an int in Python, but `true` is not a number to anyone writing JSON.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValidationError(f"{what} must be a number.")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValidationError(f"{what} must be a finite number.")
    if integer and isinstance(value, float):
        if not value.is_integer():
            raise ValidationError(f"{what} must be a whole number.")
        value = int(value)
    if abs(value) > 2**53:
        raise ValidationError(f"{what} is too large.")
    return value


def clean_definitions(definitions: object) -> list[dict[str, Any]]:
    """The definitions in their stored shape (every key present); ValidationError naming the
    parameter otherwise."""
    if not isinstance(definitions, list):
        raise ValidationError("Parameters must be a list of definitions.")
    if len(definitions) > MAX_PARAMETERS:
        raise ValidationError(f"A job can have at most {MAX_PARAMETERS} parameters.")
    cleaned, seen = [], set()
    for position, definition in enumerate(definitions, start=1):
        name = definition.get("name") if isinstance(definition, dict) else None
        label = f"Parameter {name}" if isinstance(name, str) and name else f"Parameter {position}"
        try:
            result = _clean_definition(definition)
        except ValidationError as exc:
            raise ValidationError([f"{label}: {message}" for message in exc.messages]) from exc
        if result["name"] in seen:
            raise ValidationError(f"{label}: the name is used twice.", code="duplicate_name")
        seen.add(result["name"])
        cleaned.append(result)
    return cleaned


def _clean_definition(definition: object) -> dict[str, Any]:
    if not isinstance(definition, dict):
        raise ValidationError("a definition must be an object.")
    unknown = sorted(set(definition) - set(DEFINITION_DEFAULTS))
    if unknown:
        raise ValidationError(f"unknown keys: {', '.join(map(str, unknown))}.")
    result = DEFINITION_DEFAULTS | definition
    result["choices"] = result["choices"] or []
    validate_name(result["name"])
    kind = result["type"]
    if kind not in TYPES:
        raise ValidationError(f"the type must be one of {', '.join(TYPES)}.")
    result["label"] = _text(result["label"] or "", "the label", MAX_LABEL_LENGTH)
    result["help"] = _text(result["help"] or "", "the help", MAX_HELP_LENGTH)
    if not isinstance(result["required"], bool):
        raise ValidationError("required must be true or false.")

    def only_for(key: str, kinds: tuple[str, ...], empty: object) -> None:
        if result[key] not in (empty, None) and kind not in kinds:
            raise ValidationError(f"{key} applies only to types {', '.join(kinds)}.")

    only_for("choices", CHOICE_TYPES, [])
    only_for("pattern", TEXT_TYPES, "")
    only_for("min", NUMBER_TYPES, None)
    only_for("max", NUMBER_TYPES, None)
    only_for("max_length", TEXT_TYPES, None)
    if kind in CHOICE_TYPES:
        result["choices"] = _clean_choices(result["choices"])
    if kind in TEXT_TYPES:
        result["pattern"] = _clean_pattern(result["pattern"] or "")
        if result["max_length"] is not None:
            length = result["max_length"]
            if isinstance(length, bool) or not isinstance(length, int) or length < 1:
                raise ValidationError("max_length must be a positive whole number.")
            if length > MAX_VALUE_BYTES:
                raise ValidationError(f"max_length can be at most {MAX_VALUE_BYTES}.")
    if kind in NUMBER_TYPES:
        for key in ("min", "max"):
            if result[key] is not None:
                result[key] = _number(result[key], key, integer=kind == "integer")
        if None not in (result["min"], result["max"]) and result["min"] > result["max"]:
            raise ValidationError("min is larger than max.")
    if result["default"] is not None:
        if kind == "secret":
            # A default would sit in the job's definition in plain text for anyone to read.
            raise ValidationError("a secret parameter cannot have a default.")
        try:
            result["default"] = clean_value(result, result["default"])
        except ValidationError as exc:
            raise ValidationError(f"the default is not valid: {exc.messages[0]}") from exc
    return result


def _clean_choices(choices: object) -> list[str]:
    if not isinstance(choices, list) or not choices:
        raise ValidationError("choices must be a non-empty list.")
    if len(choices) > MAX_CHOICES:
        raise ValidationError(f"at most {MAX_CHOICES} choices.")
    for choice in choices:
        _text(choice, "a choice", MAX_CHOICE_LENGTH)
        if not choice or "\n" in choice or "\r" in choice:
            # Multichoice values arrive newline-separated: a choice must be one line.
            raise ValidationError("a choice must be one non-empty line.")
    if len(set(choices)) != len(choices):
        raise ValidationError("a choice is listed twice.")
    return list(choices)


def _clean_pattern(pattern: str) -> str:
    _text(pattern, "the pattern", MAX_PATTERN_LENGTH)
    try:
        regex.compile(pattern)
    except regex.error as exc:
        raise ValidationError(f"the pattern is not a valid regular expression: {exc}.") from exc
    return pattern


def clean_value(definition: Mapping[str, Any], value: object) -> Any:
    """One value, checked against its (cleaned) definition; its typed value."""
    kind = definition["type"]
    if kind in TEXT_TYPES:
        text = _text(value, "The value", definition["max_length"] or MAX_VALUE_BYTES)
        if len(text.encode()) > MAX_VALUE_BYTES:
            raise ValidationError(f"The value can be at most {MAX_VALUE_BYTES} bytes.")
        if kind == "secret":
            validate_secret_value(text)
        if kind == "string" and ("\n" in text or "\r" in text):
            raise ValidationError("The value must be one line.")
        if definition["pattern"] and not _matches(definition["pattern"], text):
            raise ValidationError(f"The value must match the pattern {definition['pattern']}.")
        return text
    if kind in NUMBER_TYPES:
        number = _number(value, "The value", integer=kind == "integer")
        if definition["min"] is not None and number < definition["min"]:
            raise ValidationError(f"The value must be at least {definition['min']}.")
        if definition["max"] is not None and number > definition["max"]:
            raise ValidationError(f"The value must be at most {definition['max']}.")
        return number
    if kind == "boolean":
        if not isinstance(value, bool):
            raise ValidationError("The value must be true or false.")
        return value
    if kind == "choice":
        if value not in definition["choices"]:
            raise ValidationError(f"{_shown(value)} is not one of the choices.")
        return value
    if not isinstance(value, list) or len(value) > len(definition["choices"]):
        raise ValidationError("The value must be a list of choices.")
    for item in value:
        if item not in definition["choices"]:
            raise ValidationError(f"{_shown(item)} is not one of the choices.")
    if len(set(value)) != len(value):
        raise ValidationError("A choice is given twice.")
    return value


def _matches(pattern: str, text: str) -> bool:
    try:
        return regex.fullmatch(pattern, text, timeout=PATTERN_SECONDS) is not None
    except TimeoutError:
        raise ValidationError(
            "The value could not be checked against the pattern in time: the pattern "
            "backtracks too much (ask for it to be simplified)."
        ) from None


def _shown(value: object) -> str:
    return repr(value)[:80]


def is_empty(value: object) -> bool:
    return value is None or value == "" or value == []


class ParameterErrors(ValidationError):
    """Values that a run cannot start with: a message per parameter name."""

    def __init__(self, errors: dict[str, list[str]]) -> None:
        super().__init__(errors)
        self.by_name = errors


def clean_values(
    definitions: Iterable[Mapping[str, Any]], values: Mapping[str, Any] | None
) -> dict[str, Any]:
    """The values a run starts with: every parameter, defaults filled in, typed.

    ParameterErrors names each parameter whose value is missing, unknown or invalid; nothing
    may start then. A parameter that is neither given nor required, and has no default, is
    left out (its variable is not set).
    """
    values = dict(values or {})
    definitions = list(definitions)
    errors: dict[str, list[str]] = {}
    known = {definition["name"] for definition in definitions}
    for name in sorted(set(values) - known, key=str):
        errors[str(name)[:80]] = ["This job has no such parameter."]
    cleaned: dict[str, Any] = {}
    for definition in definitions:
        name = definition["name"]
        value = values.get(name)
        if is_empty(value):
            value = definition["default"]
        if is_empty(value):
            if definition["required"]:
                errors[name] = ["A value is required."]
            continue
        try:
            cleaned[name] = clean_value(definition, value)
        except ValidationError as exc:
            errors[name] = exc.messages
    if errors:
        raise ParameterErrors(errors)
    sizes = {name: len(environment_value(value).encode()) for name, value in cleaned.items()}
    if sum(sizes.values()) > MAX_ENVIRONMENT_BYTES:
        largest = max(sizes, key=sizes.__getitem__)  # the one to shorten first
        raise ParameterErrors(
            {
                largest: [
                    f"All the values come to {sum(sizes.values())} bytes; a run takes at "
                    f"most {MAX_ENVIRONMENT_BYTES}."
                ]
            }
        )
    return cleaned


def environment_value(value: Any) -> str:
    """How a typed value reaches the script: booleans as true/false, multichoice values one
    per line, numbers as JSON writes them."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "\n".join(value)
    return str(value)


def secret_names(definitions: Iterable[Mapping[str, Any]]) -> list[str]:
    return [d["name"] for d in definitions if d["type"] == "secret"]
