from __future__ import annotations

from typing import Any

from django import forms
from django.core.exceptions import ValidationError

from accounts.forms import TeamOwnedForm
from jobs.models import Job
from servers.models import Server


class JobForm(forms.ModelForm):
    script = forms.CharField(
        strip=False,  # a heredoc or a trailing blank line is part of the script
        widget=forms.Textarea(attrs={"rows": 16, "spellcheck": "false"}),
        help_text="Run on each server with the interpreter.",
    )

    class Meta:
        model = Job
        fields = [
            "team",
            "name",
            "description",
            "enabled",
            "interpreter",
            "script",
            "servers",
            "max_parallel",
            "timeout_seconds",
            "use_terminal",
        ]

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if data.get("team") and data.get("servers") is not None:
            try:
                Job(team=data["team"]).clean_targets(list(data["servers"]))
            except ValidationError as exc:
                self.add_error("servers", exc)
        return data


class JobPageForm(TeamOwnedForm, JobForm):
    """The UI's job form: its targets are checkboxes, for the target picker."""

    class Meta(JobForm.Meta):
        widgets = {"servers": forms.CheckboxSelectMultiple}


class RunForm(forms.Form):
    """Which of the job's team's servers to run on; the job's own targets are preselected."""

    servers = forms.ModelMultipleChoiceField(
        queryset=Server.objects.none(), widget=forms.CheckboxSelectMultiple, required=True
    )

    def __init__(self, *args: Any, job: Job, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["servers"].queryset = (
            Server.objects.filter(team=job.team_id).order_by("name").prefetch_related("tags")
        )
        self.fields["servers"].initial = [server.pk for server in job.servers.all()]
