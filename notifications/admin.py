from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import Model
from django.http import HttpRequest

from accounts import policy
from accounts.models import Source
from jobs.models import Job
from notifications import destinations, services
from notifications.forms import ChannelForm, RuleAdminForm
from notifications.models import Delivery, DeliveryAttempt, NotificationChannel, NotificationRule
from tsubame.adminscope import ReadOnlyAdmin, TeamScopedAdmin


@admin.register(NotificationChannel)
class NotificationChannelAdmin(TeamScopedAdmin):
    """The URL is write-only, as servers' credentials are; a signing secret the save makes is
    shown once, in the message on the next page, as a new API token is."""

    form = ChannelForm
    save_service = staticmethod(services.save_channel)
    delete_service = staticmethod(services.delete_channel)
    list_display = ["name", "team", "destination", "signed", "enabled", "failing_since"]
    list_filter = ["team", "enabled"]
    list_select_related = ["team"]
    search_fields = ["name"]
    readonly_fields = ["destination", "signed", "failing_since", "last_error"]
    fieldsets = [
        (None, {"fields": ["team", "name", "enabled"]}),
        ("Destination (write-only)", {"fields": ["destination", "signed", "new_url"]}),
        ("Health", {"fields": ["failing_since", "last_error"]}),
    ]

    def get_readonly_fields(self, request: HttpRequest, obj: Model | None = None) -> list[str]:
        # Its rules name jobs of its team, as in the web UI.
        return [*self.readonly_fields, "team"] if obj is not None else self.readonly_fields

    @admin.display(description="Destination")
    def destination(self, channel: NotificationChannel) -> str:
        return destinations.shown_url(channel.url) if channel.pk else "—"

    @admin.display(description="Signed", boolean=True)
    def signed(self, channel: NotificationChannel) -> bool | None:
        return destinations.is_signed(channel.url) if channel.pk else None

    def save_model(
        self, request: HttpRequest, obj: NotificationChannel, form: Any, change: bool
    ) -> None:
        before = obj.signing_secret
        services.save_channel(
            obj,
            actor=request.user,
            source=Source.ADMIN,
            changed_fields=form.changed_fields,
        )
        if obj.signing_secret and obj.signing_secret != before:
            messages.warning(
                request,
                f"The signing secret of {obj.name} (copy it now into the receiver's settings, "
                f"it is not shown again): {obj.signing_secret}",
            )

    def get_deleted_objects(self, objs: Any, request: HttpRequest) -> Any:
        # Its delivery log goes with it (services.delete_channel), though no one may delete
        # a delivery on its own.
        deleted, counts, perms_needed, protected = super().get_deleted_objects(objs, request)
        perms_needed.discard(Delivery._meta.verbose_name)
        return deleted, counts, perms_needed, protected


@admin.register(NotificationRule)
class NotificationRuleAdmin(TeamScopedAdmin):
    form = RuleAdminForm
    save_service = staticmethod(services.save_rule)
    delete_service = staticmethod(services.delete_rule)
    list_display = ["__str__", "channel", "job", "events", "after_failures", "enabled"]
    list_filter = ["enabled", "channel"]
    list_select_related = ["channel", "job"]
    search_fields = ["channel__name", "job__name"]

    def get_readonly_fields(self, request: HttpRequest, obj: Model | None = None) -> list[str]:
        # A rule stays with its channel (and so with its team), as in the API.
        return ["channel"] if obj is not None else []

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "channel":
            kwargs["queryset"] = policy.restrict(
                NotificationChannel.objects.select_related("team"), request.user, self.perm("add")
            )
        if db_field.name == "job":
            # The form keeps the job to the channel's team.
            kwargs["queryset"] = policy.visible(Job.objects.all(), request.user)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)


class DeliveryAttemptInline(admin.TabularInline):
    model = DeliveryAttempt
    fields = ["number", "started_at", "finished_at", "ok", "answer"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_view_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        # Whoever sees the delivery sees its attempts (DeliveryAttempt.view_permission).
        return request.user.has_perm("notifications.view_notificationchannel", obj)

    def has_add_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False


@admin.register(Delivery)
class DeliveryAdmin(ReadOnlyAdmin):
    """The delivery log: written by the planner, the senders and the test message only."""

    list_display = ["created_at", "channel", "event", "execution", "status", "attempts"]
    list_filter = ["status", "event", "channel"]
    list_select_related = ["channel", "execution"]
    search_fields = ["channel__name", "title"]
    inlines = [DeliveryAttemptInline]
