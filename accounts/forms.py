from __future__ import annotations

import math
from typing import Any

from django import forms
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.forms import AuthenticationForm

from accounts import throttle


class ThrottledLoginMixin:
    """Refuses logins while the username or the address is locked out, and says so."""

    request: Any
    cleaned_data: dict[str, Any]

    def clean(self) -> dict[str, Any]:
        username = (self.cleaned_data.get("username") or "").strip()
        address = throttle.client_address(self.request)
        wait = throttle.locked_for(username, address)
        if wait is not None:
            minutes = max(1, math.ceil(wait.total_seconds() / 60))
            raise forms.ValidationError(
                f"Too many failed logins. Try again in {minutes} minute"
                f"{'s' if minutes != 1 else ''}.",
                code="locked_out",
            )
        try:
            cleaned = super().clean()  # type: ignore[misc]
        except forms.ValidationError:
            throttle.record_failure(username, address)
            raise
        throttle.forget_failures(username)
        return cleaned


class LoginForm(ThrottledLoginMixin, AuthenticationForm):
    pass


class AdminLoginForm(ThrottledLoginMixin, AdminAuthenticationForm):
    pass
