from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import serializers

from accounts.models import Team
from servers import ssh
from servers.models import Server, Tag
from servers.validation import private_key_error
from tsubame.api.base import StrictModelSerializer, StrictSerializer, VisibleRelatedField

SECRET_FIELDS = ("private_key", "passphrase", "password")


class TagNamesField(serializers.ListField):
    """Tag names, under the rule the UI's form applies (Tag.valid_names). A name that is no
    tag yet becomes one when the server is saved, so whether one exists (perhaps only on
    another team's servers) is never told."""

    child = serializers.CharField()

    def to_internal_value(self, data: Any) -> list[str]:
        try:
            return Tag.valid_names(super().to_internal_value(data))
        except DjangoValidationError as exc:
            raise serializers.ValidationError(exc.messages) from exc

    def to_representation(self, tags: Any) -> list[str]:
        return [tag.name for tag in tags.all()]


class ServerSerializer(StrictModelSerializer):
    """Secrets are write-only: omit one to keep it, send "" or null to clear it."""

    team = VisibleRelatedField(queryset=Team.objects.all())
    tags = TagNamesField(required=False)
    private_key = serializers.CharField(
        write_only=True, required=False, allow_blank=True, allow_null=True, trim_whitespace=False
    )
    passphrase = serializers.CharField(
        write_only=True, required=False, allow_blank=True, allow_null=True, trim_whitespace=False
    )
    password = serializers.CharField(
        write_only=True, required=False, allow_blank=True, allow_null=True, trim_whitespace=False
    )
    has_private_key = serializers.SerializerMethodField()
    has_passphrase = serializers.SerializerMethodField()
    has_password = serializers.SerializerMethodField()
    host_key_trusted_by = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True
    )

    class Meta:
        model = Server
        fields = [
            "id",
            "team",
            "name",
            "host",
            "port",
            "username",
            "auth_method",
            "private_key",
            "passphrase",
            "password",
            "has_private_key",
            "has_passphrase",
            "has_password",
            "host_key_type",
            "host_key_fingerprint",
            "host_key_trusted_at",
            "host_key_trusted_by",
            "tags",
            "description",
            "last_check_status",
            "last_check_message",
            "last_check_latency_ms",
            "last_check_at",
            "created_at",
            "updated_at",
        ]
        read_only_fields = [
            "host_key_type",
            "host_key_fingerprint",
            "host_key_trusted_at",
            "last_check_status",
            "last_check_message",
            "last_check_latency_ms",
            "last_check_at",
        ]

    def get_has_private_key(self, server: Server) -> bool:
        return bool(server.private_key)

    def get_has_passphrase(self, server: Server) -> bool:
        return bool(server.passphrase)

    def get_has_password(self, server: Server) -> bool:
        return bool(server.password)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        attrs = super().validate(attrs)
        if attrs.get("private_key"):
            passphrase = attrs.get("passphrase", getattr(self.instance, "passphrase", None))
            if error := private_key_error(attrs["private_key"], passphrase):
                raise serializers.ValidationError({"private_key": error})
        return attrs


class HostKeySerializer(StrictSerializer):
    key_type = serializers.CharField(read_only=True)
    key_base64 = serializers.CharField(read_only=True)
    fingerprint = serializers.CharField(read_only=True)

    @staticmethod
    def of(key: ssh.HostKey) -> dict[str, str]:
        return {
            "key_type": key.key_type,
            "key_base64": key.key_base64,
            "fingerprint": key.fingerprint,
        }


class TrustHostKeySerializer(StrictSerializer):
    fingerprint = serializers.RegexField(
        r"^SHA256:[A-Za-z0-9+/]{43}$",
        help_text="The fingerprint you verified, as `SHA256:...`. The key is trusted only "
        "if the server still offers exactly this one.",
    )


class ConnectionCheckSerializer(StrictSerializer):
    status = serializers.CharField()
    latency_ms = serializers.FloatField(allow_null=True)
    message = serializers.CharField()
