from __future__ import annotations

from datetime import datetime
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.db.models import QuerySet
from django.http import HttpRequest

from accounts import policy, services
from accounts.models import ApiToken, AuditEvent, Membership, Source, Team, token_expiry
from tsubame.adminscope import ScopedListFiltersAdmin


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 1
    autocomplete_fields = ["user"]

    def get_autocomplete_fields(self, request: HttpRequest) -> list[str]:
        # The user search needs the view permission on users, which only superusers have:
        # team managers pick from a plain list of users (as they name any user in the API).
        return list(self.autocomplete_fields) if request.user.is_superuser else []

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "role":
            kwargs["queryset"] = policy.assignable_roles(request.user)
        if db_field.name == "user":
            users = get_user_model().objects.all()
            kwargs["queryset"] = users.order_by(get_user_model().USERNAME_FIELD)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    # The inline's obj is the team: its managers manage its members.
    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.has_perm("accounts.view_team", obj)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.has_perm("accounts.manage_members", obj)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.has_perm("accounts.manage_members", obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.has_perm("accounts.manage_members", obj)


@admin.register(Team)
class TeamAdmin(ScopedListFiltersAdmin):
    list_display = ["name", "description", "created_at"]
    search_fields = ["name", "description"]
    inlines = [MembershipInline]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Team]:
        return policy.visible(super().get_queryset(request), request.user)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.has_perm("accounts.view_team", obj)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Managers change the team's members (the inline); the team itself is theirs to see.
        return request.user.has_perm("accounts.manage_members", obj)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return request.user.is_superuser

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.is_superuser

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return [] if request.user.is_superuser else ["name", "description"]

    def save_formset(self, request: HttpRequest, form: Any, formset: Any, change: bool) -> None:
        # Members are added, changed and removed by the services, each with its audit row.
        formset.save(commit=False)
        for membership in formset.deleted_objects:
            services.remove_membership(membership, actor=request.user, source=Source.ADMIN)
        for membership, fields in formset.changed_objects:
            if "user" in fields:  # the row now names someone else: the first person leaves
                before = Membership.objects.select_related("user", "role").get(pk=membership.pk)
                services.remove_membership(before, actor=request.user, source=Source.ADMIN)
            self._set(request, membership)
        for membership in formset.new_objects:
            self._set(request, membership)

    def _set(self, request: HttpRequest, membership: Membership) -> None:
        services.set_membership(
            membership.team,
            membership.user,
            membership.role,
            actor=request.user,
            source=Source.ADMIN,
        )


@admin.register(AuditEvent)
class AuditEventAdmin(ScopedListFiltersAdmin):
    list_display = ["at", "actor_name", "action", "object_type", "object_repr", "team", "source"]
    list_filter = ["action", "source", "team", "object_type"]
    search_fields = ["actor_name", "object_repr", "object_id"]
    date_hierarchy = "at"
    list_select_related = ["team"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[AuditEvent]:
        return policy.visible(super().get_queryset(request), request.user)

    def has_module_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("accounts.view_team_audit")

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.has_perm("accounts.view_team_audit", obj)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class ApiTokenForm(forms.ModelForm):
    class Meta:
        model = ApiToken
        fields = ["name", "expires_at"]
        help_texts = {"expires_at": "Empty: as late as allowed (API_TOKEN_MAX_DAYS)."}

    def clean_expires_at(self) -> datetime:
        return token_expiry(self.cleaned_data["expires_at"])


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """Each person manages their own tokens; the secret is shown once, right after adding."""

    form = ApiTokenForm
    list_display = ["name", "user", "lookup", "created_at", "expires_at", "last_used_at", "active"]
    list_filter = ["revoked_at"]
    search_fields = ["name", "user__username", "lookup"]
    fields = ["name", "expires_at", "lookup", "created_at", "last_used_at", "revoked_at"]
    readonly_fields = ["lookup", "created_at", "last_used_at", "revoked_at"]
    actions = ["revoke"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[ApiToken]:
        tokens = super().get_queryset(request).select_related("user")
        return tokens if request.user.is_superuser else tokens.filter(user=request.user)

    def has_module_permission(self, request: HttpRequest) -> bool:
        return request.user.is_active and request.user.is_staff

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self.has_module_permission(request)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return self.has_module_permission(request)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(boolean=True)
    def active(self, token: ApiToken) -> bool:
        return token.is_active

    def save_model(self, request: HttpRequest, obj: ApiToken, form: Any, change: bool) -> None:
        obj.user = request.user
        secret = services.issue_token(obj, source=Source.ADMIN)
        messages.warning(request, f"Your new token (copy it now, it is not shown again): {secret}")

    @admin.action(description="Revoke selected tokens")
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiToken]) -> None:
        for token in queryset:
            services.revoke_token(token, actor=request.user, source=Source.ADMIN)
