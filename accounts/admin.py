from __future__ import annotations

from datetime import datetime
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.auth import admin as auth_admin
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db.models import QuerySet
from django.http import HttpRequest

from accounts import policy, services
from accounts.models import ApiToken, AuditEvent, Membership, Source, Team, token_expiry
from accounts.roles import ROLE_GROUP_NAMES, role_groups
from tsubame.adminscope import ScopedListFiltersAdmin


def save_memberships(formset: Any, *, actor: Any) -> None:
    """Apply a memberships inline through the services, each change with its audit row."""
    formset.save(commit=False)
    for membership in formset.deleted_objects:
        services.remove_membership(membership, actor=actor, source=Source.ADMIN)
    for membership, fields in formset.changed_objects:
        if {"user", "team"} & set(fields):  # the row now names another person or team
            before = Membership.objects.select_related("user", "role").get(pk=membership.pk)
            services.remove_membership(before, actor=actor, source=Source.ADMIN)
        _set_membership(membership, actor)
    for membership in formset.new_objects:
        _set_membership(membership, actor)


def _set_membership(membership: Membership, actor: Any) -> None:
    services.set_membership(
        membership.team, membership.user, membership.role, actor=actor, source=Source.ADMIN
    )


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


RETENTION_FIELDS = [
    "output_retention_days",
    "execution_retention_days",
    "failed_execution_retention_days",
    "keep_last_runs",
]
TEAM_SETTINGS = ["name", "description", *RETENTION_FIELDS]
RETENTION_HELP = (
    "Counted from the end of each run. Runs still waiting, queued or running are never "
    "touched. Workers apply these every PRUNE_EVERY_SECONDS; `manage.py prune --dry-run` "
    "shows what would go."
)


@admin.register(Team)
class TeamAdmin(ScopedListFiltersAdmin):
    list_display = ["name", "description", "created_at"]
    search_fields = ["name", "description"]
    inlines = [MembershipInline]
    fieldsets = [
        (None, {"fields": ["name", "description"]}),
        ("Retention", {"fields": [*RETENTION_FIELDS, "pruned_at"], "description": RETENTION_HELP}),
    ]

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
        # The team's own settings need the change permission (superusers, by default), the
        # same the API asks; managers hold manage_members, which opens the page for members.
        if request.user.has_perm("accounts.change_team", obj):
            return ["pruned_at"]
        return [*TEAM_SETTINGS, "pruned_at"]

    def save_model(self, request: HttpRequest, obj: Team, form: Any, change: bool) -> None:
        services.save_team(
            obj, actor=request.user, source=Source.ADMIN, changed_fields=form.changed_data
        )

    def save_formset(self, request: HttpRequest, form: Any, formset: Any, change: bool) -> None:
        save_memberships(formset, actor=request.user)


class UserMembershipInline(admin.TabularInline):
    """A person's teams on their user page: the same memberships as the team page's inline."""

    model = Membership
    fk_name = "user"
    fields = ["team", "role"]
    extra = 1
    verbose_name = "team membership"
    verbose_name_plural = "Team memberships (a role in a team grants its permissions there)"

    def get_queryset(self, request: HttpRequest) -> QuerySet[Membership]:
        # Only rows the user may change: a row of another team could not be saved back.
        queryset = super().get_queryset(request).select_related("team", "role")
        return policy.restrict(queryset, request.user, "accounts.manage_members")

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "team":
            kwargs["queryset"] = policy.teams_for(request.user, "accounts.manage_members")
        if db_field.name == "role":
            kwargs["queryset"] = policy.assignable_roles(request.user)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    # The inline's obj is the person; which teams they may be put in is the team choice.
    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.has_perm("accounts.manage_members")

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.has_perm("accounts.manage_members")

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.has_perm("accounts.manage_members")

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.has_perm("accounts.manage_members")


GROUPS_HELP = (
    "Plain groups grant permissions checked outside any team (users, tags). The team roles "
    "(Team viewer, Team operator, Team manager) are not offered here: a person holds a role "
    "in a team, given per team under Team memberships below."
)
ROLE_GROUP_HELP = (
    "This group is a team role: its permissions hold within each team where a member has "
    "this role. Give it to people as a team membership (on the team's or the person's page), "
    "never as a plain group, which would grant nothing."
)

admin.site.unregister(get_user_model())


@admin.register(get_user_model())
class UserAdmin(auth_admin.UserAdmin):
    inlines = [UserMembershipInline]

    def formfield_for_manytomany(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "groups":
            # A role group held directly would grant its permissions in no team.
            kwargs["queryset"] = Group.objects.exclude(pk__in=role_groups())
            kwargs["help_text"] = GROUPS_HELP
        return super().formfield_for_manytomany(db_field, request, **kwargs)

    def save_formset(self, request: HttpRequest, form: Any, formset: Any, change: bool) -> None:
        save_memberships(formset, actor=request.user)


admin.site.unregister(Group)


@admin.register(Group)
class GroupAdmin(auth_admin.GroupAdmin):
    list_display = ["name", "team_role"]

    @admin.display(boolean=True, description="Team role")
    def team_role(self, group: Group) -> bool:
        return group.name in ROLE_GROUP_NAMES

    def get_fieldsets(self, request: HttpRequest, obj: Group | None = None) -> Any:
        fieldsets = super().get_fieldsets(request, obj)
        if obj is None or obj.name not in ROLE_GROUP_NAMES:
            return fieldsets
        (name, options), *rest = fieldsets
        return [(name, {**options, "description": ROLE_GROUP_HELP}), *rest]


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

    def clean_expires_at(self) -> datetime | None:
        # issue_token applies the rule (token_expiry) when saving; the admin saves only a valid
        # form, so it asks the same rule here to show a refusal on the field.
        expires_at = self.cleaned_data["expires_at"]
        token_expiry(expires_at)
        return expires_at


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
