"""The one module that decides which parameter definitions and values are acceptable."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.exceptions import ValidationError

from jobs.parameters import (
    MAX_ENVIRONMENT_BYTES,
    MAX_SECRET_BYTES,
    MAX_VALUE_BYTES,
    ParameterErrors,
    clean_definitions,
    clean_values,
    environment_value,
)


def definitions(*items: dict[str, Any]) -> list[dict[str, Any]]:
    return clean_definitions(list(items))


def errors_of(defs: list[dict[str, Any]], values: dict[str, Any]) -> dict[str, list[str]]:
    with pytest.raises(ParameterErrors) as caught:
        clean_values(defs, values)
    return caught.value.by_name


@pytest.mark.parametrize(
    "name", ["VERSION", "A", "APP_PATH", "X1", "DRY_RUN", "A" * 64, "PATHS", "HOMEPAGE"]
)
def test_environment_variable_names_are_accepted(name: str) -> None:
    assert definitions({"name": name})[0]["name"] == name


@pytest.mark.parametrize(
    "name", ["version", "1A", "_X", "A-B", "A B", "", "A" * 65, "É", "A\n", None, 5]
)
def test_names_that_are_not_variable_names_are_refused(name: object) -> None:
    with pytest.raises(ValidationError, match="not a valid name"):
        definitions({"name": name})


@pytest.mark.parametrize(
    "name",
    [
        "PATH",
        "HOME",
        "USER",
        "LOGNAME",
        "SHELL",
        "PWD",
        "IFS",
        "ENV",
        "BASH_ENV",
        "CDPATH",
        "PS4",
        "LANG",
        "LC_ALL",
        "LC_CTYPE",
        "LD_PRELOAD",
        "LD_LIBRARY_PATH",
        "TSUBAME_SERVER",
        "TSUBAME_ANYTHING",
        "SSH_AUTH_SOCK",
        "TMPDIR",
        "SHELLOPTS",
        "BASHPID",
        "PIPESTATUS",
        "UID",
        "PYTHONPATH",
        "PERL5OPT",
        "NODE_OPTIONS",
        "GIT_SSH_COMMAND",
        "LESSOPEN",
    ],
)
def test_names_the_system_relies_on_are_refused_with_a_clear_message(name: str) -> None:
    with pytest.raises(ValidationError) as caught:
        definitions({"name": name})
    assert f"{name} is a name the shell or the system relies on" in caught.value.messages[0]


def test_a_name_used_twice_is_refused() -> None:
    with pytest.raises(ValidationError, match="VERSION: the name is used twice"):
        definitions({"name": "VERSION"}, {"name": "VERSION", "type": "integer"})


@pytest.mark.parametrize(
    ("definition", "message"),
    [
        ({"name": "A", "type": "date"}, "the type must be one of"),
        ({"name": "A", "colour": "red"}, "unknown keys: colour"),
        ({"name": "A", "type": "choice"}, "choices must be a non-empty list"),
        ({"name": "A", "type": "choice", "choices": ["x", "x"]}, "a choice is listed twice"),
        ({"name": "A", "type": "choice", "choices": ["a\nb"]}, "one non-empty line"),
        ({"name": "A", "choices": ["x"]}, "choices applies only to types choice, multichoice"),
        ({"name": "A", "type": "integer", "pattern": "x"}, "pattern applies only"),
        ({"name": "A", "pattern": "("}, "not a valid regular expression"),
        ({"name": "A", "min": 1}, "min applies only to types integer, number"),
        ({"name": "A", "type": "integer", "min": 5, "max": 1}, "min is larger than max"),
        ({"name": "A", "type": "integer", "min": 1.5}, "min must be a whole number"),
        ({"name": "A", "max_length": 0}, "max_length must be a positive whole number"),
        ({"name": "A", "max_length": MAX_VALUE_BYTES + 1}, "max_length can be at most"),
        ({"name": "A", "type": "secret", "default": "hunter22"}, "cannot have a default"),
        ({"name": "A", "type": "integer", "default": "5"}, "the default is not valid"),
        ({"name": "A", "type": "integer", "default": 9, "max": 5}, "the default is not valid"),
        ({"name": "A", "required": "yes"}, "required must be true or false"),
        ({"name": "A", "label": "x" * 101}, "the label can be at most 100"),
        ("A", "a definition must be an object"),
    ],
)
def test_bad_definitions_are_refused_naming_the_parameter(definition: Any, message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        clean_definitions([definition])
    text = caught.value.messages[0]
    assert message in text
    assert text.startswith("Parameter A:" if isinstance(definition, dict) else "Parameter 1:")


def test_definitions_are_stored_with_every_key() -> None:
    (stored,) = definitions({"name": "VERSION"})
    assert stored == {
        "name": "VERSION",
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


def test_too_many_parameters_are_refused() -> None:
    with pytest.raises(ValidationError, match="at most 50 parameters"):
        clean_definitions([{"name": f"P{i}"} for i in range(51)])


EVERY_TYPE = definitions(
    {"name": "S", "type": "string", "pattern": "[0-9.]+", "max_length": 10},
    {"name": "T", "type": "text"},
    {"name": "I", "type": "integer", "min": 1, "max": 10},
    {"name": "N", "type": "number", "min": 0.5},
    {"name": "B", "type": "boolean"},
    {"name": "C", "type": "choice", "choices": ["dev", "prod"]},
    {"name": "M", "type": "multichoice", "choices": ["a", "b", "c"]},
    {"name": "X", "type": "secret"},
)


def test_typed_values_of_every_type_are_accepted() -> None:
    values = {
        "S": "1.2.3",
        "T": "line 1\nline 2\n",
        "I": 7,
        "N": 0.75,
        "B": False,
        "C": "prod",
        "M": ["c", "a"],
        "X": "s3cr3t'\"$`\\",
    }
    assert clean_values(EVERY_TYPE, values) == values


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("S", "abc", "must match the pattern [0-9.]+"),
        ("S", "1.2.3.4.5.6.7", "at most 10 characters"),
        ("S", "1\n2", "must be one line"),
        ("S", 5, "must be text"),
        ("S", "1\x002", "null characters"),
        ("T", "a\x00", "null characters"),
        ("X", "a\x00", "null characters"),
        ("T", "é" * (MAX_VALUE_BYTES // 2 + 1), "at most 65536 bytes"),
        ("I", "5", "must be a number"),
        ("I", True, "must be a number"),
        ("I", 1.5, "must be a whole number"),
        ("I", 0, "at least 1"),
        ("I", 11, "at most 10"),
        ("N", float("nan"), "finite"),
        ("N", 0.1, "at least 0.5"),
        ("B", "true", "true or false"),
        ("B", 1, "true or false"),
        ("C", "staging", "'staging' is not one of the choices"),
        ("M", "a", "a list of choices"),
        ("M", ["a", "z"], "'z' is not one of the choices"),
        ("M", ["a", "a"], "given twice"),
    ],
)
def test_a_bad_value_is_refused_naming_its_parameter(name: str, value: Any, message: str) -> None:
    errors = errors_of(EVERY_TYPE, {name: value})
    assert list(errors) == [name]
    assert message in errors[name][0]


def test_every_bad_value_and_unknown_name_is_reported_at_once() -> None:
    errors = errors_of(EVERY_TYPE, {"I": 0, "C": "x", "NOPE": 1})
    assert errors == {
        "NOPE": ["This job has no such parameter."],
        "I": ["The value must be at least 1."],
        "C": ["'x' is not one of the choices."],
    }


def test_defaults_fill_in_and_required_parameters_need_a_value() -> None:
    defs = definitions(
        {"name": "ENVIRONMENT", "type": "choice", "choices": ["dev", "prod"], "default": "dev"},
        {"name": "VERSION", "required": True},
        {"name": "DRY_RUN", "type": "boolean", "default": True},
        {"name": "NOTE"},
    )
    assert errors_of(defs, {}) == {"VERSION": ["A value is required."]}
    assert errors_of(defs, {"VERSION": ""}) == {"VERSION": ["A value is required."]}
    assert clean_values(defs, {"VERSION": "1.0"}) == {
        "ENVIRONMENT": "dev",
        "VERSION": "1.0",
        "DRY_RUN": True,
    }
    # An explicit false is a value, not "missing": the default does not override it.
    assert clean_values(defs, {"VERSION": "1", "DRY_RUN": False})["DRY_RUN"] is False


def test_a_secret_parameter_cannot_be_required_away() -> None:
    defs = definitions({"name": "TOKEN", "type": "secret", "required": True})
    assert errors_of(defs, {"TOKEN": ""}) == {"TOKEN": ["A value is required."]}


@pytest.mark.parametrize(
    ("value", "text"),
    [(True, "true"), (False, "false"), (["a", "b"], "a\nb"), (3, "3"), (0.5, "0.5"), ("x", "x")],
)
def test_values_reach_the_script_as_text(value: Any, text: str) -> None:
    assert environment_value(value) == text


def test_lone_surrogates_are_refused_as_text_anywhere() -> None:
    # JSON can carry "\ud800"; no server can receive it.
    errors = errors_of(EVERY_TYPE, {"X": "abc\ud800def", "T": "\udfff"})
    assert errors == {
        "T": ["The value must be valid Unicode text."],
        "X": ["The value must be valid Unicode text."],
    }
    with pytest.raises(ValidationError, match="valid Unicode"):
        definitions({"name": "A", "type": "choice", "choices": ["\ud800"]})
    with pytest.raises(ValidationError, match="valid Unicode"):
        definitions({"name": "A", "label": "\ud800"})


def test_a_secret_is_at_most_16_kib() -> None:
    defs = definitions({"name": "KEY", "type": "secret"})
    assert clean_values(defs, {"KEY": "k" * MAX_SECRET_BYTES})
    errors = errors_of(defs, {"KEY": "é" * (MAX_SECRET_BYTES // 2 + 1)})
    assert errors["KEY"][0].startswith(f"A secret can be at most {MAX_SECRET_BYTES} bytes")


def test_all_values_together_are_bounded() -> None:
    defs = definitions(*({"name": f"T{n}", "type": "text"} for n in range(5)))
    big = "x" * (MAX_VALUE_BYTES - 10)
    errors = errors_of(defs, {f"T{n}": big + str(n) for n in range(5)})
    assert list(errors) == ["T0"]
    assert f"a run takes at most {MAX_ENVIRONMENT_BYTES}" in errors["T0"][0]


def test_a_pattern_that_backtracks_forever_is_given_up_on_with_a_clear_error() -> None:
    defs = definitions({"name": "NAME", "pattern": "(a|aa)+$"})
    assert clean_values(defs, {"NAME": "aaaa"}) == {"NAME": "aaaa"}
    # With `re` this takes longer than the universe has left; here it gives up in time.
    errors = errors_of(defs, {"NAME": "a" * 64 + "!"})
    assert "could not be checked against the pattern in time" in errors["NAME"][0]
