"""Notification channels, the rules that route outcomes to them, and the outbox of deliveries.

A delivery is one message to one channel about one outcome of one execution: planned by the
reaction to the execution's event (notifications.planning), sent by a worker's sender
(notifications.sending), every attempt kept as a DeliveryAttempt for the channel's log.
"""

from __future__ import annotations

import uuid

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils import timezone

from accounts.ownership import TeamOwned
from tsubame.crypto import SecretTextField


class Event(models.TextChoices):
    """What a rule can ask to hear about."""

    STARTED = "started", "Started"
    SUCCEEDED = "succeeded", "Succeeded"
    # Failed, timed out or lost, after the last attempt.
    FAILED = "failed", "Failed"
    # The first success after a failure.
    RECOVERED = "recovered", "Recovered"
    # The Nth failure in a row (the rule's after_failures), once per run of failures.
    FAILED_IN_A_ROW = "failed_in_a_row", "Failed N times in a row"
    CANCELLED = "cancelled", "Cancelled"
    # A schedule's slot that no worker started in time, and a run the overlap rule skipped.
    MISSED = "missed", "Missed"
    SKIPPED = "skipped", "Skipped"


class NotificationChannel(TeamOwned, models.Model):
    """Where a team's notifications go: an apprise URL (mailto://, slack://, ntfy://, ...)
    or an http(s):// URL, which receives signed JSON (Standard Webhooks)."""

    team = models.ForeignKey(
        "accounts.Team", on_delete=models.CASCADE, related_name="notification_channels"
    )
    name = models.CharField(max_length=100)
    # Holds tokens and passwords: encrypted, and never shown again once saved.
    url = SecretTextField()
    # whsec_<base64>: signs what an http(s):// channel sends; shown once, when made.
    signing_secret = SecretTextField(blank=True, null=True)
    enabled = models.BooleanField(default=True)
    # Set by the first failed attempt after a success, cleared by the next success: the
    # dashboard shows the channel as failing meanwhile.
    failing_since = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["team", "name"]
        constraints = [models.UniqueConstraint(fields=["team", "name"], name="channel_unique_name")]

    def __str__(self) -> str:
        return self.name


class NotificationRule(TeamOwned, models.Model):
    """Which events of which job a channel hears. A rule without a job is the team's
    default: it covers each job of the team that has no rule of its own."""

    team_path = "channel__team_id"

    channel = models.ForeignKey(NotificationChannel, on_delete=models.CASCADE, related_name="rules")
    job = models.ForeignKey(
        "jobs.Job",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="notification_rules",
    )
    events = models.JSONField(default=list)
    # N of "failed N times in a row".
    after_failures = models.PositiveSmallIntegerField(
        default=3, validators=[MinValueValidator(1), MaxValueValidator(100)]
    )
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["channel", "job", "id"]

    def __str__(self) -> str:
        target = self.job.name if self.job_id and self.job else "every job"
        return f"{self.channel} ← {target}"


def new_message_id() -> str:
    return f"msg_{uuid.uuid4().hex}"


class Delivery(TeamOwned, models.Model):
    """One message to one channel: about one outcome of an execution, or a test message."""

    team_path = "channel__team_id"
    view_permission = "notifications.view_notificationchannel"

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SENDING = "sending", "Sending"
        SENT = "sent", "Sent"
        # Every attempt failed, or the destination refused it for good.
        FAILED = "failed", "Failed"
        # Whether it arrived is unknown (the destination did not answer in time, or the
        # worker stopped during an attempt), and it is not sent again, so that nobody gets
        # it twice.
        UNKNOWN = "unknown", "Unknown"

    channel = models.ForeignKey(
        NotificationChannel, on_delete=models.CASCADE, related_name="deliveries"
    )
    execution = models.ForeignKey(
        "executions.Execution",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="notifications",
    )
    # The execution event's kind (started, failed, ...): one message per channel each.
    outcome = models.CharField(max_length=20, blank=True)
    # Sent as `webhook-id` on every attempt, so that a receiver drops repeats; unique across
    # installations, as several may post to one receiver.
    message_id = models.CharField(max_length=40, unique=True, default=new_message_id)
    # What the message announces: an Event, or "test".
    event = models.CharField(max_length=20)
    title = models.CharField(max_length=250)
    body = models.TextField()
    payload = models.JSONField(default=dict)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True, default=timezone.now)
    # An attempt in progress holds the delivery until then; past it, its worker died.
    sending_until = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            # The reaction that plans deliveries runs at least once: this makes it once.
            models.UniqueConstraint(
                fields=["execution", "outcome", "channel"],
                condition=models.Q(execution__isnull=False),
                name="one_delivery_per_outcome_and_channel",
            )
        ]
        indexes = [models.Index(fields=["status", "next_attempt_at"])]
        verbose_name_plural = "deliveries"

    def __str__(self) -> str:
        return f"{self.event} to {self.channel}"


class DeliveryAttempt(TeamOwned, models.Model):
    """One try at sending a delivery, and what the destination answered."""

    team_path = "delivery__channel__team_id"
    view_permission = "notifications.view_notificationchannel"

    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="attempt_log")
    number = models.PositiveSmallIntegerField()
    started_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    # None while in progress, or when its worker died during it.
    ok = models.BooleanField(null=True)
    answer = models.TextField(blank=True)

    class Meta:
        ordering = ["delivery", "number"]
        constraints = [
            models.UniqueConstraint(fields=["delivery", "number"], name="one_attempt_per_number")
        ]

    def __str__(self) -> str:
        return f"{self.delivery} #{self.number}"
