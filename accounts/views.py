from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from accounts import services, timezones
from accounts.forms import LoginForm
from accounts.models import ApiToken, Source, expiry_in_days


class LoginView(auth_views.LoginView):
    form_class = LoginForm  # throttled, like the admin's
    template_name = "registration/login.html"
    redirect_authenticated_user = True


class NewTokenForm(forms.Form):
    name = forms.CharField(max_length=100)
    # How long a token may live is token_expiry's rule, applied when it is issued.
    expires_in_days = forms.IntegerField(required=False)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        most = settings.API_TOKEN_MAX_DAYS
        days = self.fields["expires_in_days"]
        days.widget.attrs.update(min=1, max=most)
        days.help_text = f"At most {most}. Empty: {most}."


class TimeZoneForm(forms.Form):
    time_zone = forms.ChoiceField(
        required=False,
        help_text="Every time in tsubame is shown in this zone, labelled with it.",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        automatic = ("", f"Automatic: your browser's, else the server's ({settings.TIME_ZONE})")
        self.fields["time_zone"].choices = [automatic, *timezones.choices()]


@login_required
def preferences(request: HttpRequest) -> HttpResponse:
    form = TimeZoneForm(
        request.POST or None, initial={"time_zone": timezones.chosen_zone(request.user)}
    )
    if request.method == "POST" and form.is_valid():
        timezones.choose_zone(request.user, form.cleaned_data["time_zone"])
        messages.success(request, "Time zone saved.")
        return redirect("preferences")
    return render(request, "accounts/preferences.html", {"form": form, "section": "preferences"})


@login_required
def token_list(request: HttpRequest) -> HttpResponse:
    form = NewTokenForm(request.POST or None)
    secret = None
    if request.method == "POST" and form.is_valid():
        token = ApiToken(
            user=request.user,
            name=form.cleaned_data["name"],
            expires_at=expiry_in_days(form.cleaned_data["expires_in_days"]),
        )
        try:
            secret = services.issue_token(token, source=Source.UI)
        except ValidationError as exc:
            form.add_error("expires_in_days", exc)
        else:
            form = NewTokenForm()
    tokens = ApiToken.objects.filter(user=request.user)
    return render(
        request,
        "accounts/tokens.html",
        {"tokens": tokens, "form": form, "secret": secret, "section": "tokens"},
    )


@login_required
@require_POST
def token_revoke(request: HttpRequest, pk: int) -> HttpResponse:
    token = get_object_or_404(ApiToken, pk=pk, user=request.user)
    services.revoke_token(token, actor=request.user, source=Source.UI)
    messages.success(request, f"Token {token.name} revoked.")
    return redirect("token-list")
