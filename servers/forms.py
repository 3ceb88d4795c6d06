from __future__ import annotations

import re
from typing import Any

from django import forms

from accounts.forms import TeamOwnedForm
from servers.models import Server, Tag
from servers.validation import private_key_error
from tsubame.crypto import is_usable_secret

SECRET_FIELDS = ("private_key", "passphrase", "password")
# The inputs that belong to one authentication method; the UI form ignores the other's.
METHOD_INPUTS = {
    Server.AuthMethod.KEY: ("new_private_key", "private_key_file", "new_passphrase"),
    Server.AuthMethod.PASSWORD: ("new_password",),
}


class WriteOnlyTextarea(forms.Textarea):
    """A textarea that, like PasswordInput(render_value=False), never renders a value: a form
    sent back for another field's error must not put a pasted key into the page."""

    def format_value(self, value: object) -> None:
        return None


class ServerForm(forms.ModelForm):
    """Secrets are write-only: the form never shows a stored or typed one, it only replaces it.

    The inputs are named `new_<secret>` rather than after the model fields, so that
    ModelForm neither pre-fills them from the instance nor blanks a stored secret when an
    input is left empty. Leaving one empty keeps what is stored; "clear" removes it.
    """

    new_private_key = forms.CharField(
        label="Private key",
        required=False,
        strip=False,
        widget=WriteOnlyTextarea(attrs={"rows": 4, "autocomplete": "off", "spellcheck": "false"}),
        help_text="Paste a private key (OpenSSH or PEM format) to replace the stored one. "
        "It is never shown back: if the form has errors, paste it again.",
    )
    new_passphrase = forms.CharField(
        label="Key passphrase",
        required=False,
        strip=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
    )
    new_password = forms.CharField(
        label="Password",
        required=False,
        strip=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
    )
    private_key_file = forms.FileField(
        required=False,
        label="…or upload the key file",
        help_text="Instead of pasting: the private key file, e.g. ~/.ssh/id_ed25519.",
    )
    clear_private_key = forms.BooleanField(required=False, label="Clear the stored private key")
    clear_passphrase = forms.BooleanField(required=False, label="Clear the stored passphrase")
    clear_password = forms.BooleanField(required=False, label="Clear the stored password")

    class Meta:
        model = Server
        fields = ["team", "name", "host", "port", "username", "auth_method", "tags", "description"]

    def clean_private_key_file(self) -> None:
        upload = self.cleaned_data.get("private_key_file")
        if upload:
            if upload.size > 64 * 1024:
                raise forms.ValidationError("That file is far too large to be a private key.")
            try:
                self.cleaned_data["new_private_key"] = upload.read().decode()
            except UnicodeDecodeError:
                raise forms.ValidationError("That file is not a text private key.") from None

    def clean(self) -> dict[str, object]:
        data = super().clean()
        key = data.get("new_private_key")
        if key:
            stored = self.instance.passphrase
            passphrase = data.get("new_passphrase") or (
                stored if is_usable_secret(stored) and not data.get("clear_passphrase") else None
            )
            if error := private_key_error(key, passphrase):
                self.add_error("new_private_key", error)
        return data

    def save(self, commit: bool = True) -> Server:
        server = super().save(commit=False)
        for name in SECRET_FIELDS:
            if self.cleaned_data.get(f"clear_{name}"):
                setattr(server, name, None)
            elif self.cleaned_data.get(f"new_{name}"):
                setattr(server, name, self.cleaned_data[f"new_{name}"])
        if commit:
            server.save()
            self.save_m2m()
        return server


class TagNamesField(forms.CharField):
    """Tag names typed as text, separated by commas or spaces; the names, sorted, unique."""

    def prepare_value(self, value: Any) -> Any:
        return ", ".join(value) if isinstance(value, list | tuple) else value

    def to_python(self, value: Any) -> list[str]:
        return Tag.valid_names(
            name for name in re.split(r"[\s,]+", super().to_python(value)) if name
        )


class ServerPageForm(TeamOwnedForm, ServerForm):
    """The UI's server form: tags by name (new names become tags when saved), only the
    chosen authentication method's secrets, and a "clear" box only for a stored secret."""

    tags = TagNamesField(
        required=False,
        help_text="Separated by commas. A name that is not a tag yet becomes one.",
    )

    class Meta(ServerForm.Meta):
        fields = ["team", "name", "host", "port", "username", "description", "auth_method"]

    field_order = ["team", "name", "host", "port", "username", "tags", "description"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.initial.setdefault("tags", [tag.name for tag in self.instance.tags.all()])
        for name in SECRET_FIELDS:
            # Undecryptable ciphertext counts as stored: clearing it is how one gets rid of it.
            if not getattr(self.instance, name):
                del self.fields[f"clear_{name}"]

    def clean(self) -> dict[str, object]:
        # The page shows only the chosen method's inputs. A key pasted before switching to
        # password authentication (or the reverse) is neither checked nor stored.
        for method, names in METHOD_INPUTS.items():
            if self.cleaned_data.get("auth_method") != method:
                for name in names:
                    self.cleaned_data.pop(name, None)
        return super().clean()

    @property
    def method_groups(self) -> list[tuple[str, str, list[forms.BoundField]]]:
        """Per authentication method: its value, its label and its secret inputs."""
        return [
            (method.value, method.label, [self[name] for name in names])
            for method, names in METHOD_INPUTS.items()
        ]

    @property
    def clear_inputs(self) -> list[forms.BoundField]:
        return [self[f"clear_{name}"] for name in SECRET_FIELDS if f"clear_{name}" in self.fields]

    @property
    def general_inputs(self) -> list[forms.BoundField]:
        grouped = {name for names in METHOD_INPUTS.values() for name in names}
        grouped |= {f"clear_{name}" for name in SECRET_FIELDS}
        return [field for field in self if field.name not in grouped]
