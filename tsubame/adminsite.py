"""The admin site: Django's, with every check of a password throttled (accounts.throttle), and
many-to-many rows named by their two ends."""

from __future__ import annotations

from typing import Any

from django.apps import apps
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.db.models import Model
from django.http import HttpRequest, HttpResponse
from django.urls import reverse

from accounts.forms import AdminLoginForm, ThrottledPasswordChangeForm


class PasswordChangeView(auth_views.PasswordChangeView):
    form_class = ThrottledPasswordChangeForm

    def get_form_kwargs(self) -> dict[str, Any]:
        return {**super().get_form_kwargs(), "request": self.request}


class AdminSite(admin.AdminSite):
    login_form = AdminLoginForm

    def password_change(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        # As Django's, with the throttled form.
        view = PasswordChangeView.as_view(
            success_url=reverse("admin:password_change_done", current_app=self.name),
            extra_context={**self.each_context(request), **(extra_context or {})},
        )
        request.current_app = self.name
        return view(request)


def _relationship_str(row: Model) -> str:
    return ", ".join(
        f"{field.verbose_name} {getattr(row, field.name)}"
        for field in row._meta.fields
        if field.is_relation
    )


def name_relationship_rows() -> None:
    """Name both ends of each many-to-many row ("job nightly, server web-1").

    Django's own "Job_servers object (2)" is what a delete confirmation lists for a job
    that targets the server being deleted; the rows Django creates have no __str__ of ours.
    """
    for model in apps.get_models(include_auto_created=True):
        if model._meta.auto_created:
            model.__str__ = _relationship_str  # type: ignore[method-assign]
