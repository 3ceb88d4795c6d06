from __future__ import annotations

from typing import Any

from django import forms

from executions.models import Execution
from jobs import parameters
from jobs.forms import parameter_field


class RerunForm(forms.Form):
    """Run an execution again, on all its servers or only those whose host did not succeed
    (the button pressed says which). Its secret parameters are asked for again: their values
    are not kept after a run (`executions.services.rerun_execution`)."""

    only_failed = forms.BooleanField(required=False)

    def __init__(self, *args: Any, execution: Execution, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Only those the run was given: one left out then is not needed now either.
        self.secret_names = [
            name
            for name in parameters.secret_names(execution.parameter_definitions)
            if name in execution.parameters
        ]
        definitions = {d["name"]: d for d in execution.parameter_definitions}
        for name in self.secret_names:
            self.fields[name] = parameter_field(definitions[name])
            self.fields[name].widget.attrs["placeholder"] = "not kept: type it again"

    @property
    def secret_inputs(self) -> list[forms.BoundField]:
        return [self[name] for name in self.secret_names]

    def rerun_arguments(self) -> dict[str, Any]:
        """`rerun_execution`'s only_failed and secret_parameters. Nothing here can be invalid:
        the service judges the values."""
        self.full_clean()
        return {
            "only_failed": self.cleaned_data["only_failed"],
            "secret_parameters": {name: self.cleaned_data[name] for name in self.secret_names},
        }
