from __future__ import annotations

from functools import cached_property
from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.db.models import Q, QuerySet

from accounts import timezones
from accounts.forms import TeamOwnedForm
from jobs import chains, parameters, webhooks
from jobs.models import ChainWhen, Job, Schedule, SecretVariable, Webhook
from servers.forms import TagNamesField, WriteOnlyTextarea
from servers.models import Server, Tag


class ParametersField(forms.JSONField):
    """The ordered parameter definitions as JSON (the job editor's script writes it), stored
    as `parameters.clean_definitions` shapes them."""

    def to_python(self, value: Any) -> Any:
        return parameters.clean_definitions(super().to_python(value) or [])


KEPT_WHEN_NOT_SENT = ("concurrency", "retry_attempts", "retry_delay_seconds", "retry_backoff")


class JobForm(forms.ModelForm):
    script = forms.CharField(
        strip=False,  # a heredoc or a trailing blank line is part of the script
        widget=forms.Textarea(attrs={"rows": 16, "spellcheck": "false"}),
        help_text="Run on each server with the interpreter.",
    )
    target_tags = TagNamesField(
        required=False,
        help_text="Separated by commas: the job also runs on every server of its team with "
        "one of these tags, as the servers are when the run starts.",
    )
    parameters = ParametersField(
        required=False,
        initial=list,  # a new job's, shown as [] (ModelForm takes no initial from a new object)
        widget=forms.Textarea(attrs={"rows": 6, "spellcheck": "false"}),
        help_text="What a run asks for; each value reaches the script as an environment "
        "variable of the parameter's name.",
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
            "target_tags",
            "parameters",
            "secret_variables",
            "max_parallel",
            "timeout_seconds",
            "use_terminal",
            "concurrency",
            "retry_attempts",
            "retry_delay_seconds",
            "retry_backoff",
        ]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            # By name, as the field takes them (the model's initial has them as Tag objects).
            self.initial["target_tags"] = [t.name for t in self.instance.target_tags.all()]
        # A post without them (a page or script from before they existed) keeps the job's
        # settings. The admin leaves them out altogether for those who may only look.
        for name in KEPT_WHEN_NOT_SENT:
            if name in self.fields:
                self.fields[name].required = False

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        for name in KEPT_WHEN_NOT_SENT:
            if name in self.fields and data.get(name) in (None, ""):
                data[name] = getattr(self.instance, name)
        if data.get("team") and data.get("servers") is not None:
            try:
                Job(team=data["team"]).clean_targets(list(data["servers"]))
            except ValidationError as exc:
                self.add_error("servers", exc)
        if data.get("team") and data.get("secret_variables") is not None:
            job = Job(team=data["team"], parameters=data.get("parameters") or [])
            try:
                job.clean_secret_variables(list(data["secret_variables"]))
            except ValidationError as exc:
                self.add_error("secret_variables", exc)
        return data


def next_jobs_field(label: str, help_text: str) -> forms.ModelMultipleChoiceField:
    return forms.ModelMultipleChoiceField(
        queryset=Job.objects.none(),
        required=False,
        widget=forms.CheckboxSelectMultiple,
        label=label,
        help_text=help_text,
    )


# The job form's lists of next jobs, each the links of one `when` (jobs.chains).
THEN_FIELDS = {
    "then_succeeded": ChainWhen.SUCCEEDED,
    "then_failed": ChainWhen.FAILED,
    "then_finished": ChainWhen.FINISHED,
}


class JobPageForm(TeamOwnedForm, JobForm):
    """The UI's job form: its targets, secret variables and next jobs are checkboxes, and
    its parameters are edited row by row (parameters.js writes the JSON field)."""

    # Sent with the lists of next jobs: a post without it (from a page that had none) keeps
    # the job's links, where unticked lists would drop them.
    then_shown = forms.BooleanField(required=False, initial=True, widget=forms.HiddenInput)
    then_succeeded = next_jobs_field("After it succeeds", "")
    then_failed = next_jobs_field("After it fails", "Failed, timed out or lost.")
    then_finished = next_jobs_field("After it finishes either way", "Not after a cancel.")

    class Meta(JobForm.Meta):
        widgets = {
            "servers": forms.CheckboxSelectMultiple,
            "secret_variables": forms.CheckboxSelectMultiple,
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            for link in self.instance.links.all():
                for name, when in THEN_FIELDS.items():
                    if link.when == when:
                        self.initial.setdefault(name, []).append(link.next_job_id)

    def offer_next_jobs(self, jobs: QuerySet[Job]) -> None:
        """The jobs the view lets the user choose from (the form keeps them to the team)."""
        for name in THEN_FIELDS:
            self.fields[name].queryset = jobs.exclude(pk=self.instance.pk).select_related("team")

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if not data.get("then_shown"):
            data["links"] = None
            return data
        data["links"] = [
            (job, when) for name, when in THEN_FIELDS.items() for job in data.get(name) or ()
        ]
        if data.get("team"):
            saved = Job(pk=self.instance.pk, team=data["team"], name=data.get("name", ""))
            try:
                chains.clean_links(saved, data["links"])
            except ValidationError as exc:
                self.add_error("then_succeeded", exc)
        return data

    then_field_names = tuple(THEN_FIELDS)

    @property
    def then_fields(self) -> list[forms.BoundField]:
        return [self[name] for name in THEN_FIELDS]

    @property
    def changed_fields(self) -> list[str]:
        """What changed, for the audit: the lists of next jobs are named as what they set."""
        changed = [n for n in self.changed_data if n not in THEN_FIELDS and n != "then_shown"]
        return [*changed, "links"] if set(self.changed_data) & set(THEN_FIELDS) else changed

    @property
    def parameter_editor(self) -> dict[str, Any]:
        """For parameters.js: the types, and which types each optional key of a definition
        applies to, so that a row shows only those inputs (`clean_definitions` refuses a key
        given for another type)."""
        return {
            "types": parameters.TYPES,
            "applies": {
                "default": [kind for kind in parameters.TYPES if kind != "secret"],
                "choices": parameters.CHOICE_TYPES,
                "pattern": parameters.TEXT_TYPES,
                "max_length": parameters.TEXT_TYPES,
                "min": parameters.NUMBER_TYPES,
                "max": parameters.NUMBER_TYPES,
            },
        }


class NumberText(forms.CharField):
    """A number input's text as a number when it reads as one, and otherwise as typed, for
    `parameters.clean_values` to refuse in its own words."""

    widget = forms.NumberInput(attrs={"step": "any"})

    def to_python(self, value: Any) -> Any:
        text = super().to_python(value)
        for number in (int, float):
            try:
                return number(text)
            except ValueError:
                pass
        return text


class MultilineText(forms.CharField):
    widget = forms.Textarea(attrs={"rows": 3, "spellcheck": "false"})

    def to_python(self, value: Any) -> Any:
        # Browsers send textareas with CRLF line ends, which the script would then read.
        return super().to_python(value).replace("\r\n", "\n")


class OfferedChoice(forms.ChoiceField):
    def validate(self, value: Any) -> None:
        """Whatever is posted goes on to `parameters.clean_values`, which judges it."""


class OfferedChoices(forms.MultipleChoiceField):
    widget = forms.CheckboxSelectMultiple

    def validate(self, value: Any) -> None:
        """Whatever is posted goes on to `parameters.clean_values`, which judges it."""


def parameter_field(definition: dict[str, Any]) -> forms.Field:
    """The input for one parameter's value. It only turns what is typed into the value's
    type: whether the value will do is for `parameters.clean_values` (called by
    `start_execution`) to say, so no input is required and none refuses anything."""
    kind = definition["type"]
    options: dict[str, Any] = {
        "required": False,
        "label": definition["label"] or definition["name"],
        "help_text": definition["help"],
        "initial": definition["default"],
    }
    field: forms.Field
    if kind == "text":
        field = MultilineText(strip=False, **options)
    elif kind in parameters.NUMBER_TYPES:
        field = NumberText(**options)
    elif kind == "boolean":
        field = forms.BooleanField(**options)
    elif kind == "multichoice":
        field = OfferedChoices(choices=[(c, c) for c in definition["choices"]], **options)
    elif kind == "choice":
        # Left empty, a choice takes its default: an empty option would only seem to unset it.
        empty = [] if definition["default"] is not None else [("", "—")]
        field = OfferedChoice(choices=empty + [(c, c) for c in definition["choices"]], **options)
    elif kind == "secret":
        widget = forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"})
        field = forms.CharField(strip=False, widget=widget, **options)
    else:
        field = forms.CharField(strip=False, **options)
    field.parameter = definition  # for the page: the name and the required marker
    return field


class RunForm(forms.Form):
    """The run dialog: a value for each of the job's parameters, and the servers and tags to
    run on (the job's own preselected).

    It sends `chosen_targets`, which tells it from the plain Run button: that one sends
    nothing, and runs the job's own targets and defaults (the view never builds this form
    for it), so that ticking no server here is never taken for "the job's own".
    """

    chosen_targets = forms.BooleanField(required=False, initial=True, widget=forms.HiddenInput)
    servers = forms.ModelMultipleChoiceField(
        queryset=Server.objects.none(), widget=forms.CheckboxSelectMultiple, required=False
    )
    tags = forms.ModelMultipleChoiceField(
        queryset=Tag.objects.none(),
        to_field_name="name",
        widget=forms.CheckboxSelectMultiple,
        required=False,
        label="Servers by tag",
        help_text="Every server of the team with a ticked tag, as the servers are when the "
        "run starts.",
    )

    def __init__(self, *args: Any, job: Job, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["servers"].queryset = (
            Server.objects.filter(team=job.team_id).order_by("name").prefetch_related("tags")
        )
        self.fields["servers"].initial = [server.pk for server in job.servers.all()]
        # A target tag that no server carries yet is offered too: it stays ticked.
        self.fields["tags"].queryset = Tag.objects.filter(
            Q(servers__team=job.team_id) | Q(jobs=job)
        ).distinct()
        self.fields["tags"].initial = [tag.name for tag in job.target_tags.all()]
        self.parameter_names = [definition["name"] for definition in job.parameters]
        for definition in job.parameters:
            self.fields[definition["name"]] = parameter_field(definition)

    @property
    def parameter_inputs(self) -> list[forms.BoundField]:
        return [self[name] for name in self.parameter_names]

    @cached_property
    def tag_targets(self) -> list[tuple[Server, bool]]:
        """The team's servers that carry a tag, each with whether a ticked tag takes it:
        where the tags lead, as the dialog shows it."""
        ticked = set(self["tags"].value() or ())
        found = []
        for server in self.fields["servers"].queryset:
            names = {tag.name for tag in server.tags.all()}
            if names:
                found.append((server, bool(names & ticked)))
        return found

    @property
    def tags_take_servers(self) -> bool:
        return any(taken for _server, taken in self.tag_targets)

    def start_arguments(self) -> dict[str, Any]:
        """`start_execution`'s servers, tags and parameters, from a valid form."""
        return {
            "servers": list(self.cleaned_data["servers"]),
            "tags": [tag.name for tag in self.cleaned_data["tags"]],
            "parameters": {name: self.cleaned_data[name] for name in self.parameter_names},
        }

    def add_parameter_errors(self, errors: dict[str, list[str]]) -> None:
        """Each refused value's messages at its input (`InvalidParameters.errors`)."""
        for name, messages in errors.items():
            if name in self.parameter_names:
                self.add_error(name, messages)
            else:
                self.add_error(None, [f"{name}: {message}" for message in messages])


class SecretVariableForm(forms.ModelForm):
    """The value is write-only, as servers' secrets are (servers.forms.ServerForm): the input
    is named `new_value` so that it is never pre-filled, and left empty it keeps the value."""

    new_value = forms.CharField(
        label="Value",
        required=False,
        strip=False,
        validators=[parameters.validate_secret_value],
        widget=WriteOnlyTextarea(attrs={"rows": 3, "autocomplete": "off", "spellcheck": "false"}),
        help_text="Stored encrypted and never shown again; masked as *** in every run's "
        "output. It can have several lines (a key, a certificate).",
    )

    class Meta:
        model = SecretVariable
        fields = ["team", "name", "description"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            # Jobs of its team list it by name: moved, it would vanish from them unseen.
            self.fields["team"].disabled = True
            self.fields["new_value"].help_text += " Leave empty to keep the current value."
        else:
            self.fields["new_value"].required = True

    def clean_name(self) -> str:
        name = self.cleaned_data["name"]
        renamed = SecretVariable(pk=self.instance.pk, team_id=self.instance.team_id, name=name)
        renamed.clean_name_for_jobs()
        return name

    def clean_new_value(self) -> str:
        value = self.cleaned_data["new_value"].replace("\r\n", "\n")
        if "\x00" in value:
            raise ValidationError("Null characters are not allowed.")
        return value

    def save(self, commit: bool = True) -> SecretVariable:
        variable = super().save(commit=False)
        if self.cleaned_data.get("new_value"):
            variable.value = self.cleaned_data["new_value"]
        if commit:
            variable.save()
        return variable


class SecretVariablePageForm(TeamOwnedForm, SecretVariableForm):
    field_order = ["team", "name", "new_value", "description"]


class ScheduleForm(forms.ModelForm):
    """A schedule of one job: when, in which zone, with which values and targets.

    Values are judged by `parameters.clean_values` when saved (and again at each run); a
    secret value left empty keeps the one stored.
    """

    timezone = forms.ChoiceField(choices=timezones.choices, label="Time zone")
    servers = forms.ModelMultipleChoiceField(
        queryset=Server.objects.none(),
        widget=forms.CheckboxSelectMultiple,
        required=False,
        help_text="With no server and no tag ticked, each run goes to the job's own targets.",
    )
    target_tags = forms.ModelMultipleChoiceField(
        queryset=Tag.objects.none(),
        to_field_name="name",
        widget=forms.CheckboxSelectMultiple,
        required=False,
        label="Servers by tag",
    )

    class Meta:
        model = Schedule
        fields = [
            "name",
            "cron",
            "timezone",
            "enabled",
            "missed_runs",
            "start_deadline_seconds",
            "servers",
            "target_tags",
        ]
        widgets = {"missed_runs": forms.RadioSelect}

    def __init__(self, *args: Any, job: Job, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.instance.job = job
        self.fields["servers"].queryset = Server.objects.filter(team=job.team_id).order_by("name")
        self.fields["target_tags"].queryset = Tag.objects.filter(
            Q(servers__team=job.team_id) | Q(jobs=job)
        ).distinct()
        self.parameter_names = [definition["name"] for definition in job.parameters]
        self.secret_names = set(parameters.secret_names(job.parameters))
        for definition in job.parameters:
            field = parameter_field(definition)
            if definition["name"] in self.instance.parameters:
                field.initial = self.instance.parameters[definition["name"]]
            if definition["name"] in self.stored_secrets:
                field.help_text = "Stored; leave empty to keep it. " + field.help_text
            self.fields[definition["name"]] = field

    @cached_property
    def stored_secrets(self) -> dict[str, Any]:
        return self.instance.secret_values()

    @property
    def parameter_inputs(self) -> list[forms.BoundField]:
        return [self[name] for name in self.parameter_names]

    def parameter_values(self) -> dict[str, Any]:
        values = {name: self.cleaned_data[name] for name in self.parameter_names}
        for name, stored in self.stored_secrets.items():
            if name in values and parameters.is_empty(values[name]):
                values[name] = stored
        return values

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        if not self.errors:
            try:
                parameters.clean_values(self.instance.job.parameters, self.parameter_values())
            except parameters.ParameterErrors as exc:
                for name, messages in exc.by_name.items():
                    self.add_error(name if name in self.parameter_names else None, messages)
        return cleaned


class WebhookForm(forms.ModelForm):
    """A job's webhook; the job is the page's, and the secret is made by the service."""

    parameter_map = forms.JSONField(
        required=False,
        initial=dict,
        widget=forms.Textarea(attrs={"rows": 3, "spellcheck": "false"}),
        help_text='Parameter names to dotted paths in the JSON body, e.g. {"REF": "ref", '
        '"SHA": "head_commit.id"}. A path missing from a body gives no value.',
    )

    class Meta:
        model = Webhook
        fields = [
            "name",
            "mode",
            "parameter_map",
            "filter_path",
            "filter_value",
            "rate_limit_per_minute",
            "enabled",
        ]
        help_texts = {
            "filter_path": "A dotted path, e.g. ref; a delivery whose value there is not the "
            "value below starts nothing. Empty: every delivery runs the job.",
            "rate_limit_per_minute": "Deliveries (accepted or not) beyond this within a minute "
            "are refused with 429.",
        }

    def clean_parameter_map(self) -> dict[str, str]:
        mapping = self.cleaned_data["parameter_map"] or {}
        # The page's job, or the admin's choice (none if that choice was refused).
        job = self.cleaned_data.get("job") or getattr(self.instance, "job", None)
        if job is None:
            return mapping
        try:
            return webhooks.clean_parameter_map(job, mapping)
        except ValidationError as exc:
            raise ValidationError(exc.messages) from exc

    def clean_filter_path(self) -> str:
        path = self.cleaned_data["filter_path"]
        webhooks.validate_path(path)
        return path


class WebhookAdminForm(WebhookForm):
    """The admin's: the job is chosen, and the secret is write-only, as a secret variable's
    value is. A new webhook needs one here, since the admin shows no secret it made."""

    new_secret = forms.CharField(
        label="Secret",
        required=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "off"}),
        help_text="whsec_ and at least 24 random bytes in base64. Never shown again; "
        "leave empty to keep the current one. The job's page and the API can make one.",
    )

    class Meta(WebhookForm.Meta):
        fields = ["job", *WebhookForm.Meta.fields]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk is None:
            self.fields["new_secret"].required = True

    def clean_new_secret(self) -> str:
        secret = self.cleaned_data["new_secret"]
        if secret:
            webhooks.validate_secret(secret)
        return secret

    def save(self, commit: bool = True) -> Webhook:
        webhook = super().save(commit=False)
        if self.cleaned_data.get("new_secret"):
            webhook.secret = self.cleaned_data["new_secret"]
        if commit:
            webhook.save()
        return webhook
