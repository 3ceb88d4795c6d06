from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse

from accounts.models import Source
from servers import services, ssh
from servers.forms import SECRET_FIELDS, ServerForm
from servers.models import Server, Tag
from tsubame.adminscope import TeamScopedAdmin
from tsubame.crypto import Undecryptable


@admin.register(Tag)
class TagAdmin(admin.ModelAdmin):
    search_fields = ["name"]


@admin.register(Server)
class ServerAdmin(TeamScopedAdmin):
    form = ServerForm
    save_service = staticmethod(services.save_server)
    delete_service = staticmethod(services.delete_server)
    list_display = [
        "name",
        "team",
        "address",
        "auth_method",
        "host_key_fingerprint",
        "last_check_status",
        "last_check_at",
    ]
    list_filter = ["team", "auth_method", "tags", "last_check_status"]
    list_select_related = ["team"]
    search_fields = ["name", "host", "username", "description"]
    filter_horizontal = ["tags"]
    readonly_fields = [
        "credentials_status",
        "host_key_type",
        "host_key_fingerprint",
        "host_key_trusted_at",
        "host_key_trusted_by",
        "last_check_status",
        "last_check_message",
        "last_check_latency_ms",
        "last_check_at",
    ]
    fieldsets = [
        (None, {"fields": ["team", "name", "host", "port", "username", "tags", "description"]}),
        (
            "Credentials (write-only)",
            {
                "fields": [
                    "auth_method",
                    "credentials_status",
                    "new_private_key",
                    "private_key_file",
                    "clear_private_key",
                    "new_passphrase",
                    "clear_passphrase",
                    "new_password",
                    "clear_password",
                ]
            },
        ),
        (
            "Host key",
            {
                "fields": [
                    "host_key_type",
                    "host_key_fingerprint",
                    "host_key_trusted_at",
                    "host_key_trusted_by",
                ],
                "description": "Trusted with the action “Fetch and trust host key”. "
                "Connections offering another key are refused.",
            },
        ),
        (
            "Last connection test",
            {
                "fields": [
                    "last_check_status",
                    "last_check_message",
                    "last_check_latency_ms",
                    "last_check_at",
                ]
            },
        ),
    ]
    actions = ["test_connection", "fetch_and_trust_host_key"]
    delete_confirmation_template = "admin/servers/server/delete_confirmation.html"

    def delete_view(
        self, request: HttpRequest, object_id: str, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        # The confirmation warns of the runs still going on the server, as the UI's does.
        server = self.get_object(request, unquote(object_id))
        if server is not None:
            extra_context = {
                **(extra_context or {}),
                "effects": services.deletion_effects(server, request.user),
            }
        return super().delete_view(request, object_id, extra_context)

    def formfield_for_manytomany(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "tags":
            kwargs["queryset"] = services.visible_tags(request.user)
        return super().formfield_for_manytomany(db_field, request, **kwargs)

    def has_test_connection_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("servers.test_connection")

    def has_trust_host_key_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("servers.trust_host_key")

    @admin.display(description="Stored secrets")
    def credentials_status(self, server: Server) -> str:
        def state(value: str | None) -> str:
            if isinstance(value, Undecryptable):
                return "set, but cannot be decrypted with ENCRYPTION_KEYS: re-enter it"
            return "set" if value else "not set"

        return ", ".join(
            f"{name.replace('_', ' ')}: {state(getattr(server, name))}" for name in SECRET_FIELDS
        )

    @admin.action(description="Test connection", permissions=["test_connection"])
    def test_connection(self, request: HttpRequest, queryset: QuerySet[Server]) -> None:
        for server in self.permitted(request, queryset, "servers.test_connection"):
            check = services.check_connection(server)
            latency = f" in {check.latency_ms:.0f} ms" if check.latency_ms is not None else ""
            level = messages.SUCCESS if check.status == "ok" else messages.ERROR
            self.message_user(
                request, f"{server.name}: {check.status}{latency}. {check.message}", level
            )

    @admin.action(description="Fetch and trust host key", permissions=["trust_host_key"])
    def fetch_and_trust_host_key(
        self, request: HttpRequest, queryset: QuerySet[Server]
    ) -> HttpResponse | None:
        """Show the fingerprints the servers offer; trust them only once a person confirms."""
        confirmed = "confirm" in request.POST
        offers = []
        for server in self.permitted(request, queryset, "servers.trust_host_key"):
            try:
                if confirmed:
                    fingerprint = request.POST.get(f"fingerprint-{server.pk}", "")
                    key = services.trust_offered_host_key(
                        server, fingerprint, by=request.user, source=Source.ADMIN
                    )
                    self.message_user(request, f"{server.name}: trusted {key.fingerprint}")
                else:
                    offers.append((server, ssh.fetch_host_key(server.host, server.port)))
            except (ssh.SSHError, services.FingerprintMismatch) as exc:
                self.message_user(request, f"{server.name}: {exc}", messages.ERROR)
        if confirmed or not offers:
            return None
        return TemplateResponse(
            request,
            "admin/servers/server/trust_host_keys.html",
            {
                **self.admin_site.each_context(request),
                "title": "Trust host keys",
                "offers": offers,
                "opts": self.model._meta,
                "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
            },
        )
