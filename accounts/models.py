from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator
from django.db import models
from django.utils import timezone

from accounts.ownership import TeamOwned


class Team(TeamOwned, models.Model):
    """Servers and jobs belong to a team; people hold a role in each team they are in."""

    team_path = "pk"

    name = models.CharField(max_length=100, unique=True)
    description = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    # Retention (executions.retention): how long after a run ends its output and its record
    # are kept. Empty keeps them for ever, the default, so that no upgrade deletes anything.
    output_retention_days = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        help_text="Days a finished run's output is kept; the run itself stays. Empty: for ever.",
    )
    execution_retention_days = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        help_text="Days a finished run is kept, with its hosts and output. Empty: for ever.",
    )
    failed_execution_retention_days = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        help_text="Days a failed, timed-out or lost run is kept instead, at least as long as "
        "the others. Empty: for ever.",
    )
    keep_last_runs = models.PositiveIntegerField(
        default=10,
        help_text="The latest finished runs of each job are kept whatever their age, with "
        "their output.",
    )
    # When a worker last claimed the team's pruning: a guarded update of this field is what
    # stops two workers from pruning one team at once (executions.retention.prune_if_due).
    pruned_at = models.DateTimeField("last pruned", null=True, blank=True, editable=False)

    class Meta:
        ordering = ["name"]
        permissions = [("manage_members", "Can manage the team's members")]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        self.clean_retention()

    def clean_retention(self) -> None:
        """Failed runs are what people look back at: they are never removed before the rest."""
        failed, others = self.failed_execution_retention_days, self.execution_retention_days
        if failed is None or (others is not None and failed >= others):
            return
        allowed = "empty (for ever)" if others is None else f"at least {others}, or empty"
        raise ValidationError(
            {
                "failed_execution_retention_days": "Failed runs are kept at least as long as "
                f"the others: make it {allowed}."
            },
            code="failed_kept_shorter",
        )


class Role(models.TextChoices):
    """The built-in roles. Each is a Django group whose permissions it grants within a team.

    The groups are created by a migration; a superuser may change their permissions in the
    admin. A user is never added to these groups directly: that would grant the
    permissions in every team.
    """

    VIEWER = "viewer", "Viewer"
    OPERATOR = "operator", "Operator"
    MANAGER = "manager", "Manager"

    @property
    def group_name(self) -> str:
        return f"Team {self.label.lower()}"


class Membership(TeamOwned, models.Model):
    view_permission = "accounts.view_team"  # who sees the team sees its members

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    role = models.ForeignKey(
        Group,
        on_delete=models.PROTECT,
        related_name="memberships",
        help_text="The group whose permissions this member has within the team.",
    )

    class Meta:
        ordering = ["team", "user"]
        constraints = [
            models.UniqueConstraint(fields=["team", "user"], name="membership_unique_per_team")
        ]

    def __str__(self) -> str:
        return f"{self.user} in {self.team} as {self.role}"


class Source(models.TextChoices):
    """Where an action came from: recorded on audit events and as an execution's trigger."""

    ADMIN = "admin", "Admin"
    API = "api", "API"
    UI = "ui", "Web UI"
    SCHEDULE = "schedule", "Schedule"
    WEBHOOK = "webhook", "Webhook"
    CHAIN = "chain", "Chain"
    RETRY = "retry", "Retry"
    SYSTEM = "system", "System"


class AuditEvent(TeamOwned, models.Model):
    view_permission = "accounts.view_team_audit"

    at = models.DateTimeField(default=timezone.now, db_index=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    actor_name = models.CharField(max_length=150, blank=True)
    team = models.ForeignKey(
        Team, null=True, blank=True, on_delete=models.SET_NULL, related_name="audit_events"
    )
    action = models.CharField(max_length=50, db_index=True)
    source = models.CharField(max_length=10, choices=Source.choices)
    object_type = models.CharField(max_length=100)
    object_id = models.CharField(max_length=64, blank=True)
    object_repr = models.CharField(max_length=200, blank=True)
    details = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-at", "-id"]
        permissions = [("view_team_audit", "Can view the team's audit trail")]

    def __str__(self) -> str:
        who = self.actor_name or "system"
        return f"{self.at:%Y-%m-%d %H:%M:%S} {who} {self.action} {self.object_repr}"


TOKEN_PREFIX = "tsb"


def hash_token(secret: str) -> str:
    # Tokens are 256 random bits: a fast hash cannot be brute-forced, unlike a password.
    return hashlib.sha256(secret.encode()).hexdigest()


def token_expiry(requested: datetime | None, *, made_with: ApiToken | None = None) -> datetime:
    """When a new token expires: when asked, or as late as allowed if not asked.

    Every token expires, at most API_TOKEN_MAX_DAYS from now; a token made by using
    another token cannot outlive it, or a stolen token could be renewed for ever.
    """
    now = timezone.now()
    days = settings.API_TOKEN_MAX_DAYS
    latest = now + timedelta(days=days)
    limit = f"A token may be valid for at most {days} days"
    if made_with is not None and made_with.expires_at < latest:
        latest = made_with.expires_at
        limit = "A token cannot outlive the token used to create it"
    if requested is None:
        return latest
    if requested <= now:
        raise ValidationError("The expiry must be in the future.", code="past")
    if requested > latest:
        raise ValidationError(
            f"{limit}: choose an expiry no later than {latest:%Y-%m-%d %H:%M:%S} UTC.",
            code="too_late",
        )
    return requested


def expiry_in_days(days: int | None) -> datetime | None:
    """For the faces that ask for a lifetime in days: the expiry that many days from now.

    Past the calendar's end (or its start) it is the last (first) moment there is, which
    token_expiry refuses like any other expiry too late (or past).
    """
    if days is None:
        return None
    try:
        return timezone.now() + timedelta(days=days)
    except OverflowError:
        return (datetime.max if days > 0 else datetime.min).replace(tzinfo=UTC)


class ApiTokenQuerySet(models.QuerySet["ApiToken"]):
    def active(self) -> ApiTokenQuerySet:
        return self.filter(revoked_at=None, expires_at__gt=timezone.now())


class ApiToken(models.Model):
    """A personal API token. Only a hash is stored; the token is shown once, at creation."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens"
    )
    name = models.CharField(max_length=100)
    # The first characters of the token, stored plainly: to find the row and to let people
    # recognise a token in a list without exposing it.
    lookup = models.CharField(max_length=12, unique=True, editable=False)
    token_hash = models.CharField(max_length=64, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    # Blank in a form: as late as allowed (token_expiry).
    expires_at = models.DateTimeField(blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)

    objects = ApiTokenQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({TOKEN_PREFIX}_{self.lookup}…)"

    @classmethod
    def issue(
        cls, user: object, name: str, *, expires_at: datetime | None = None
    ) -> tuple[ApiToken, str]:
        """Create a token, with no audit row (fixtures); returns it with its secret text.

        People's tokens are made by accounts.services.issue_token, which records them.
        """
        token = cls(user=user, name=name, expires_at=token_expiry(expires_at))
        secret = token.new_secret()
        token.save()
        return token, secret

    def new_secret(self) -> str:
        """Give an unsaved token its secret; the caller shows it once, only the hash stays."""
        self.lookup = secrets.token_hex(6)
        secret = f"{TOKEN_PREFIX}_{self.lookup}_{secrets.token_urlsafe(32)}"
        self.token_hash = hash_token(secret)
        return secret

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None and self.expires_at > timezone.now()


class LoginFailure(models.Model):
    """One failed password login; recent ones lock the username and the address out."""

    username = models.CharField(max_length=150, db_index=True)
    address = models.GenericIPAddressField(null=True, blank=True, db_index=True)
    at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-at"]

    def __str__(self) -> str:
        return f"{self.username} from {self.address} at {self.at}"


class Preferences(models.Model):
    """A person's own settings for the web UI; a user without a row has the defaults."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        primary_key=True,
        related_name="preferences",
    )
    # An IANA name such as Europe/Berlin; blank: the browser's zone (accounts.timezones).
    time_zone = models.CharField(max_length=64, blank=True)

    class Meta:
        verbose_name_plural = "preferences"

    def __str__(self) -> str:
        return f"Preferences of {self.user}"
