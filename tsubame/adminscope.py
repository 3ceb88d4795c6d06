"""Admin classes for team-owned models: staff see and change only what the policy allows."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, ClassVar, TypeVar

from django.contrib import admin
from django.contrib.admin.utils import get_fields_from_path
from django.db.models import Model, QuerySet
from django.http import HttpRequest

from accounts import policy
from accounts.models import Source
from accounts.ownership import view_permission

M = TypeVar("M", bound=Model)


class ScopedListFiltersAdmin(admin.ModelAdmin):
    """List filters on relations (team, job, tags...) offer only what the user's rows use.

    Django's default choices are every row of the related table: a staff member of one team
    would read every other team's name, and their jobs' and servers'. Offering the related
    objects of the rows get_queryset() (policy.visible) lets the user see, instead, reveals
    nothing the list itself does not show.
    """

    def get_list_filter(self, request: HttpRequest) -> Sequence[Any]:
        return [self._scoped(entry) for entry in super().get_list_filter(request)]

    def _scoped(self, entry: Any) -> Any:
        if isinstance(entry, str) and get_fields_from_path(self.model, entry)[-1].is_relation:
            return (entry, admin.RelatedOnlyFieldListFilter)
        return entry


class TeamScopedAdmin(ScopedListFiltersAdmin):
    """Querysets, object permissions and the team choice all come from accounts.policy."""

    # For models staff may change: `save_service = staticmethod(services.save_server)`.
    save_service: ClassVar[Callable[..., Model]]
    delete_service: ClassVar[Callable[..., None]]

    def perm(self, action: str) -> str:
        return f"{self.opts.app_label}.{action}_{self.opts.model_name}"

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        return policy.visible(super().get_queryset(request), request.user)

    def has_view_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        may_view = request.user.has_perm(view_permission(self.model), obj)
        return may_view or self.has_change_permission(request, obj)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(self.perm("add"))

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return request.user.has_perm(self.perm("change"), obj)

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return request.user.has_perm(self.perm("delete"), obj)

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions = super().get_actions(request)
        if not request.user.is_superuser:
            # Bulk delete checks the permission once for all models, not per team object.
            actions.pop("delete_selected", None)
        return actions

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "team":
            # Objects can only be put in teams where the user may create them.
            kwargs["queryset"] = policy.teams_for(request.user, self.perm("add"))
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def permitted(self, request: HttpRequest, objects: Iterable[M], perm: str) -> list[M]:
        """The selected objects the user may act on; the rest are reported, not acted on."""
        allowed = [obj for obj in objects if request.user.has_perm(perm, obj)]
        refused = [str(obj) for obj in objects if obj not in allowed]
        if refused:
            self.message_user(request, f"Not allowed for: {', '.join(refused)}", "error")
        return allowed

    # Saving and deleting go through the model's service functions, which write the audit
    # row in the same transaction (Django's admin log stays as well). A service takes the
    # object's many-to-many values as keyword arguments named after the fields.
    def save_model(self, request: HttpRequest, obj: Model, form: Any, change: bool) -> None:
        many = {f.name for f in obj._meta.many_to_many} & set(form.cleaned_data)
        self.save_service(
            obj,
            actor=request.user,
            source=Source.ADMIN,
            changed_fields=form.changed_data,
            **{name: form.cleaned_data[name] for name in many},
        )

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        # The object's many-to-many fields were saved by save_model's service.
        for formset in formsets:
            self.save_formset(request, form, formset, change=change)

    def delete_model(self, request: HttpRequest, obj: Model) -> None:
        self.delete_service(obj, actor=request.user, source=Source.ADMIN)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        for obj in queryset:
            self.delete_model(request, obj)


class ReadOnlyAdmin(TeamScopedAdmin):
    """Rows that only tsubame writes (runs, their output, delivery logs): the admin shows
    them. Deleting one would leave a hole its readers cannot see."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False
