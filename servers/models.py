from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, validate_slug
from django.db import models
from django.utils import timezone

from accounts.ownership import TeamOwned
from servers import ssh
from servers.validation import validate_one_printable_line
from tsubame.crypto import SecretTextField, Undecryptable, is_usable_secret

# What the last test or run found out about a server's health.
CHECK_FIELDS = ["last_check_status", "last_check_message", "last_check_latency_ms", "last_check_at"]


class Tag(models.Model):
    name = models.SlugField(max_length=50, unique=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @classmethod
    def named(cls, tag: Tag | str) -> Tag:
        """The tag itself, or the one of that name (created if there is none yet)."""
        return tag if isinstance(tag, Tag) else cls.objects.get_or_create(name=tag)[0]

    @classmethod
    def valid_names(cls, names: Iterable[str]) -> list[str]:
        """The names, sorted, each once; ValidationError for one that cannot be a tag.

        The one rule for tag names typed in the UI or sent to the API: a name that is no tag
        yet becomes one when the server is saved.
        """
        unique = sorted(set(names))
        for name in unique:
            if len(name) > cls._meta.get_field("name").max_length:
                raise ValidationError(f"The tag {name!r} is too long.", code="max_length")
            try:
                validate_slug(name)
            except ValidationError:
                raise ValidationError(
                    f"The tag {name!r} may only have letters, digits, - and _.", code="invalid"
                ) from None
        return unique


class Server(TeamOwned, models.Model):
    class AuthMethod(models.TextChoices):
        KEY = "key", "Private key"
        PASSWORD = "password", "Password"

    team = models.ForeignKey("accounts.Team", on_delete=models.PROTECT, related_name="servers")
    name = models.CharField(max_length=100, validators=[validate_one_printable_line])
    host = models.CharField(max_length=255, help_text="Host name or IP address.")
    port = models.PositiveIntegerField(
        default=22, validators=[MinValueValidator(1), MaxValueValidator(65535)]
    )
    username = models.CharField(max_length=64)
    auth_method = models.CharField(
        max_length=10, choices=AuthMethod.choices, default=AuthMethod.KEY
    )
    # Write-only secrets, encrypted with ENCRYPTION_KEYS; never rendered back to anyone.
    private_key = SecretTextField(blank=True, null=True)
    passphrase = SecretTextField(blank=True, null=True)
    password = SecretTextField(blank=True, null=True)

    # The host key a person chose to trust. Connections offering any other key are refused
    # before credentials are sent.
    host_key_type = models.CharField(max_length=50, blank=True)
    host_key = models.TextField(blank=True)
    host_key_fingerprint = models.CharField(max_length=100, blank=True)
    host_key_trusted_at = models.DateTimeField(null=True, blank=True)
    host_key_trusted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    tags = models.ManyToManyField(Tag, blank=True, related_name="servers")
    description = models.TextField(blank=True)

    last_check_status = models.CharField(max_length=30, blank=True)
    last_check_message = models.TextField(blank=True)
    last_check_latency_ms = models.FloatField(null=True, blank=True)
    last_check_at = models.DateTimeField(null=True, blank=True)

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["team", "name"], name="server_unique_name")]
        permissions = [
            ("trust_host_key", "Can trust the server's host key"),
            ("test_connection", "Can test the connection to the server"),
        ]

    def __str__(self) -> str:
        return self.name

    def save(self, *args: Any, **kwargs: Any) -> None:
        if is_usable_secret(self.private_key):
            # Pasted into a browser textarea, a key arrives with CRLF line ends.
            self.private_key = self.private_key.replace("\r\n", "\n")
        super().save(*args, **kwargs)

    @property
    def address(self) -> str:
        return f"{self.username}@{self.host}:{self.port}"

    @property
    def pinned_host_key(self) -> ssh.HostKey | None:
        if not self.host_key:
            return None
        return ssh.HostKey(key_type=self.host_key_type, key_base64=self.host_key)

    def credentials(self) -> ssh.Credentials:
        """The decrypted credentials for the chosen auth method; fails closed.

        A secret that no configured key decrypts raises CredentialError: it must never be
        sent to a server as if it were the password or key.
        """
        if self.auth_method == self.AuthMethod.KEY:
            secrets = {"private key": self.private_key, "passphrase": self.passphrase}
        else:
            secrets = {"password": self.password}
        for label, value in secrets.items():
            if isinstance(value, Undecryptable):
                raise ssh.CredentialError(
                    f"the stored {label} cannot be decrypted with the configured "
                    "ENCRYPTION_KEYS; re-enter it or restore the old key"
                )
        if self.auth_method == self.AuthMethod.KEY:
            if not is_usable_secret(self.private_key):
                raise ssh.CredentialError("no private key is set for this server")
            return ssh.Credentials(private_key=self.private_key, passphrase=self.passphrase or None)
        if not is_usable_secret(self.password):
            raise ssh.CredentialError("no password is set for this server")
        return ssh.Credentials(password=self.password)

    def ssh_target(self) -> ssh.Target:
        return ssh.Target(
            host=self.host,
            port=self.port,
            username=self.username,
            credentials=self.credentials(),
            host_key=self.pinned_host_key,
            connect_timeout=settings.SSH_CONNECT_TIMEOUT_SECONDS,
        )

    def trust_host_key(self, key: ssh.HostKey, user: object | None) -> None:
        if key.fingerprint != self.host_key_fingerprint:
            # The last test or run met the server under the key trusted before (or none),
            # "host key changed" most likely: that no longer says anything about it.
            self.last_check_status = self.last_check_message = ""
            self.last_check_latency_ms = self.last_check_at = None
        self.host_key_type = key.key_type
        self.host_key = key.key_base64
        self.host_key_fingerprint = key.fingerprint
        self.host_key_trusted_at = timezone.now()
        self.host_key_trusted_by = user if getattr(user, "pk", None) else None
        self.save(
            update_fields=[
                "host_key_type",
                "host_key",
                "host_key_fingerprint",
                "host_key_trusted_at",
                "host_key_trusted_by",
                *CHECK_FIELDS,
                "updated_at",
            ]
        )

    def record_check(self, check: ssh.ConnectionCheck) -> None:
        self.last_check_status = check.status
        self.last_check_message = check.message
        self.last_check_latency_ms = check.latency_ms
        self.last_check_at = timezone.now()
        self.save(update_fields=CHECK_FIELDS)
