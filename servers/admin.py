from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse

from servers import ssh
from servers.forms import SECRET_FIELDS, ServerForm
from servers.models import Server, Tag


@admin.register(Tag)
class TagAdmin(admin.ModelAdmin):
    search_fields = ["name"]


@admin.register(Server)
class ServerAdmin(admin.ModelAdmin):
    form = ServerForm
    list_display = [
        "name",
        "address",
        "auth_method",
        "host_key_fingerprint",
        "last_check_status",
        "last_check_at",
    ]
    list_filter = ["auth_method", "tags", "last_check_status"]
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
        (None, {"fields": ["name", "host", "port", "username", "tags", "description"]}),
        (
            "Credentials (write-only)",
            {
                "fields": [
                    "auth_method",
                    "credentials_status",
                    "new_private_key",
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

    @admin.display(description="Stored secrets")
    def credentials_status(self, server: Server) -> str:
        return ", ".join(
            f"{name.replace('_', ' ')}: {'set' if getattr(server, name) else 'not set'}"
            for name in SECRET_FIELDS
        )

    @admin.action(description="Test connection")
    def test_connection(self, request: HttpRequest, queryset: QuerySet[Server]) -> None:
        for server in queryset:
            try:
                check = ssh.check_connection(server.ssh_target())
            except ssh.CredentialError as exc:
                check = ssh.ConnectionCheck(status=exc.kind, latency_ms=None, message=str(exc))
            server.record_check(check)
            latency = f" in {check.latency_ms:.0f} ms" if check.latency_ms is not None else ""
            level = messages.SUCCESS if check.status == "ok" else messages.ERROR
            self.message_user(
                request, f"{server.name}: {check.status}{latency}. {check.message}", level
            )

    @admin.action(description="Fetch and trust host key")
    def fetch_and_trust_host_key(
        self, request: HttpRequest, queryset: QuerySet[Server]
    ) -> HttpResponse | None:
        """Show the fingerprints the servers offer; trust them only once a person confirms.

        On confirmation each key is fetched again and must still match the fingerprint that
        was shown, so a key swapped in between is not trusted unseen.
        """
        confirmed = "confirm" in request.POST
        offers = []
        for server in queryset:
            try:
                key = ssh.fetch_host_key(server.host, server.port)
            except ssh.SSHError as exc:
                self.message_user(request, f"{server.name}: {exc}", messages.ERROR)
                continue
            if not confirmed:
                offers.append((server, key))
            elif request.POST.get(f"fingerprint-{server.pk}") == key.fingerprint:
                server.trust_host_key(key, request.user)
                self.message_user(request, f"{server.name}: trusted {key.fingerprint}")
            else:
                self.message_user(
                    request,
                    f"{server.name}: the server now offers {key.fingerprint}, not the key you "
                    "confirmed; nothing was trusted",
                    messages.ERROR,
                )
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
