from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

from django import forms
from django.contrib.admin.forms import AdminAuthenticationForm, AdminPasswordChangeForm
from django.contrib.auth.forms import AuthenticationForm
from django.db.models import QuerySet

from accounts import throttle
from accounts.models import Team


def _refuse_if_locked(username: str, address: str | None, what: str) -> None:
    wait: timedelta | None = throttle.locked_for(username, address)
    if wait is not None:
        minutes = max(1, math.ceil(wait.total_seconds() / 60))
        raise forms.ValidationError(
            f"Too many {what}. Try again in {minutes} minute{'s' if minutes != 1 else ''}.",
            code="locked_out",
        )


class ThrottledLoginMixin:
    """Refuses logins while the username or the address is locked out, and says so."""

    request: Any
    cleaned_data: dict[str, Any]

    def clean(self) -> dict[str, Any]:
        username = (self.cleaned_data.get("username") or "").strip()
        address = throttle.client_address(self.request)
        _refuse_if_locked(username, address, "failed logins")
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


class ThrottledPasswordChangeForm(AdminPasswordChangeForm):
    """A wrong current password counts as a failed login of the account: whoever holds a
    session cannot guess the password there faster than at the login page."""

    def __init__(self, user: Any, *args: Any, request: Any, **kwargs: Any) -> None:
        self.request = request
        super().__init__(user, *args, **kwargs)

    def clean_old_password(self) -> str:
        username = self.user.get_username()
        address = throttle.client_address(self.request)
        _refuse_if_locked(username, address, "failed password attempts")
        try:
            old_password = super().clean_old_password()
        except forms.ValidationError:
            throttle.record_failure(username, address)
            raise
        throttle.forget_failures(username)
        return old_password


class TeamOwnedForm(forms.ModelForm):
    """A UI form for a team-owned object; the view names the teams it may be put in."""

    def offer_teams(self, teams: QuerySet[Team]) -> None:
        field = self.fields["team"]
        field.queryset = teams
        choices = list(teams[:2])
        # With a single team to choose from there is no choice to make: it is preselected.
        if self.instance._state.adding and len(choices) == 1:
            field.empty_label = None
            self.initial.setdefault("team", choices[0].pk)
