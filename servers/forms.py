from __future__ import annotations

from typing import Any

from django import forms

from servers.models import Server

SECRET_FIELDS = ("private_key", "passphrase", "password")


class ServerForm(forms.ModelForm):
    """Secrets are write-only: the form never shows a stored value, it only replaces it.

    Leaving a secret empty keeps what is stored; ticking "clear" removes it.
    """

    private_key = forms.CharField(
        required=False,
        strip=False,
        widget=forms.Textarea(attrs={"rows": 4, "autocomplete": "off", "spellcheck": "false"}),
        help_text="Paste a new private key (OpenSSH or PEM) to replace the stored one.",
    )
    passphrase = forms.CharField(
        required=False, strip=False, widget=forms.PasswordInput(render_value=False)
    )
    password = forms.CharField(
        required=False, strip=False, widget=forms.PasswordInput(render_value=False)
    )
    clear_private_key = forms.BooleanField(required=False, label="Clear the stored private key")
    clear_passphrase = forms.BooleanField(required=False, label="Clear the stored passphrase")
    clear_password = forms.BooleanField(required=False, label="Clear the stored password")

    class Meta:
        model = Server
        fields = ["name", "host", "port", "username", "auth_method", "tags", "description"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for name in SECRET_FIELDS:
            self.fields[name].initial = ""

    def save(self, commit: bool = True) -> Server:
        server = super().save(commit=False)
        for name in SECRET_FIELDS:
            if self.cleaned_data.get(f"clear_{name}"):
                setattr(server, name, None)
            elif self.cleaned_data.get(name):
                setattr(server, name, self.cleaned_data[name])
        if commit:
            server.save()
            self.save_m2m()
        return server
