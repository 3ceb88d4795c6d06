"""Every change to channels and rules, with its audit row; the test message."""

from __future__ import annotations

import base64
import secrets
from collections.abc import Iterable
from typing import Any

from django.db import transaction
from django.utils import timezone

from accounts import audit
from accounts.models import Source
from notifications import destinations, messages, sending
from notifications.models import Delivery, DeliveryAttempt, NotificationChannel, NotificationRule


def new_signing_secret() -> str:
    return f"whsec_{base64.b64encode(secrets.token_bytes(32)).decode()}"


def save_channel(
    channel: NotificationChannel,
    *,
    actor: Any,
    source: Source,
    changed_fields: Iterable[str] = (),
) -> NotificationChannel:
    """Create or change a channel with its audit row, which never names its URL's value.

    A channel that sends signed JSON (an http(s):// URL) gets a signing secret when it has
    none: the caller shows `channel.signing_secret` once, to whoever made it.
    """
    created = channel._state.adding
    if destinations.is_signed(channel.url) and not channel.signing_secret:
        channel.signing_secret = new_signing_secret()
    with transaction.atomic():
        channel.save()
        audit.record_saved(
            channel, created=created, actor=actor, source=source, changed_fields=changed_fields
        )
    return channel


def rotate_signing_secret(channel: NotificationChannel, *, actor: Any, source: Source) -> str:
    """A new signing secret, returned to be shown once; the old one stops at once."""
    with transaction.atomic():
        channel.signing_secret = new_signing_secret()
        channel.save(update_fields=["signing_secret", "updated_at"])
        audit.record("rotate_secret", channel, actor=actor, source=source)
    return channel.signing_secret


def delete_channel(channel: NotificationChannel, *, actor: Any, source: Source) -> None:
    """Its rules and delivery log go with it."""
    with transaction.atomic():
        audit.record("delete", channel, actor=actor, source=source)
        channel.delete()


def save_rule(
    rule: NotificationRule, *, actor: Any, source: Source, changed_fields: Iterable[str] = ()
) -> NotificationRule:
    created = rule._state.adding
    with transaction.atomic():
        rule.save()
        audit.record_saved(
            rule, created=created, actor=actor, source=source, changed_fields=changed_fields
        )
    return rule


def delete_rule(rule: NotificationRule, *, actor: Any, source: Source) -> None:
    with transaction.atomic():
        audit.record("delete", rule, actor=actor, source=source)
        rule.delete()


def send_test_message(
    channel: NotificationChannel, *, actor: Any, source: Source
) -> DeliveryAttempt:
    """Send a test message now, in the caller's thread, and return the attempt with the
    destination's answer. It is in the channel's delivery log like any other message, made
    already claimed (no sender takes it) and never retried."""
    now = timezone.now()
    with transaction.atomic():
        delivery = Delivery.objects.create(
            channel=channel,
            event="test",
            status=Delivery.Status.SENDING,
            attempts=1,
            next_attempt_at=None,
            sending_until=now + sending.lease(),
            **messages.compose_test(channel.name, channel.team.name),
        )
        claimed = DeliveryAttempt.objects.create(delivery=delivery, number=1, started_at=now)
        audit.record("test", channel, actor=actor, source=source)
    return sending.attempt(claimed)
