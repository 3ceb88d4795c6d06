"""The forms of channels and rules: the web UI's and the admin's, which differ only in what
the page has already chosen (the team of a channel being edited, the channel of a rule)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.core.exceptions import ValidationError

from accounts.forms import TeamOwnedForm
from jobs.models import Job
from notifications import destinations
from notifications.models import Event, NotificationChannel, NotificationRule
from servers.forms import WriteOnlyTextarea

TEAM_DEFAULT = "Every job without a rule of its own (team default)"


class ChannelForm(forms.ModelForm):
    """The URL is write-only, as a secret variable's value is (jobs.forms.SecretVariableForm):
    the input is named `new_url` so that it is never pre-filled, and left empty it keeps the
    URL. It holds the service's tokens and passwords."""

    new_url = forms.CharField(
        label="URL",
        required=False,
        max_length=2000,
        widget=WriteOnlyTextarea(attrs={"rows": 2, "autocomplete": "off", "spellcheck": "false"}),
        help_text="An http(s):// URL receives JSON signed with the Standard Webhooks scheme; "
        "any other is an apprise URL (mailto://, slack://, discord://, msteams://, tgram://, "
        "ntfy://, json://, ...). Stored encrypted and never shown again: pages show it with "
        "its tokens hidden.",
    )

    class Meta:
        model = NotificationChannel
        fields = ["team", "name", "enabled"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            # Its rules name jobs of its team: moved, they would name another team's jobs.
            if "team" in self.fields:
                self.fields["team"].disabled = True
            self.fields["new_url"].help_text += " Leave empty to keep the current one."
        else:
            self.fields["new_url"].required = True

    def clean_new_url(self) -> str:
        url = self.cleaned_data["new_url"]
        if not url:
            return url
        if any(character.isspace() for character in url):
            raise ValidationError("A URL has no spaces or line breaks.")
        destinations.validate_url(url)
        return url

    def save(self, commit: bool = True) -> NotificationChannel:
        channel = super().save(commit=False)
        if self.cleaned_data.get("new_url"):
            channel.url = self.cleaned_data["new_url"]
        if commit:
            channel.save()
        return channel

    @property
    def changed_fields(self) -> list[str]:
        """For the audit: the URL is named as the field it sets."""
        return ["url" if name == "new_url" else name for name in self.changed_data]


class ChannelPageForm(TeamOwnedForm, ChannelForm):
    field_order = ["team", "name", "new_url", "enabled"]


class RuleForm(forms.ModelForm):
    """A rule of the channel the page is about (the admin's form chooses it)."""

    events = forms.MultipleChoiceField(
        choices=Event.choices,
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="Failed also covers timed out and lost, after the last attempt; recovered "
        "is the first success after a failure. None ticked for a job: its runs are muted "
        "(the team default no longer covers it).",
    )

    class Meta:
        model = NotificationRule
        fields = ["job", "events", "after_failures", "enabled"]
        labels = {"after_failures": "N of “Failed N times in a row”"}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        job = self.fields["job"]
        job.empty_label = TEAM_DEFAULT
        if self.instance.channel_id:
            job.queryset = Job.objects.filter(team=self.instance.channel.team_id).order_by("name")

    def clean_events(self) -> list[str]:
        # In the order of Event, as the API stores them.
        return sorted(set(self.cleaned_data["events"]), key=Event.values.index)

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        channel = data.get("channel") or (
            self.instance.channel if self.instance.channel_id else None
        )
        job = data.get("job")
        if channel is not None and job is not None and job.team_id != channel.team_id:
            self.add_error("job", "The job is not of the channel's team.")
        return data


class RuleAdminForm(RuleForm):
    class Meta(RuleForm.Meta):
        fields = ["channel", *RuleForm.Meta.fields]
