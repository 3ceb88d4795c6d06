"""The outbox: workers send pending deliveries in the background, each at most once.

Sending is at most once per delivery, whatever dies when:
- An attempt is claimed by an update guarded on the delivery being pending and due, which
  also sets `sending_until`, in the transaction that writes its DeliveryAttempt row. Only
  one sender of any number wins it.
- The destination is called outside any transaction; its answer is recorded by an update
  guarded on the attempt's number.
- A worker that dies during an attempt leaves the delivery `sending`. Once `sending_until`
  has passed, any sender marks it `unknown`: the message may or may not have arrived, and
  it is not sent again, because a second copy is what nobody must get. The log says so.
  So is an attempt that failed only after the request went out (destinations.Result's
  `certain`): no answer in time, a connection cut mid-answer.
A destination that fails is tried again after RETRY_DELAYS (5 attempts over about an hour);
then the delivery has failed, and its channel shows as failing until a message gets through.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

from django.conf import settings
from django.db import close_old_connections, transaction
from django.db.models import F
from django.utils import timezone

from notifications import destinations
from notifications.models import Delivery, DeliveryAttempt, NotificationChannel
from tsubame.crypto import Undecryptable

logger = logging.getLogger(__name__)

Status = Delivery.Status
# Waits after the 1st, 2nd, 3rd and 4th failed attempt: the 5th comes about an hour after
# the first.
RETRY_DELAYS = (
    timedelta(minutes=1),
    timedelta(minutes=4),
    timedelta(minutes=15),
    timedelta(minutes=40),
)
MAX_ATTEMPTS = len(RETRY_DELAYS) + 1
BATCH = 50
NOT_AGAIN = (
    "whether the message arrived is unknown, and it is not sent again so that it never "
    "arrives twice"
)
INTERRUPTED = f"the worker stopped during this attempt: {NOT_AGAIN}"


def lease() -> timedelta:
    """How long an attempt may take before its worker is taken for dead: well beyond the
    time limit every destination call has."""
    return timedelta(seconds=2 * settings.NOTIFICATION_TIMEOUT_SECONDS + 60)


def claim(delivery_id: int, now: datetime) -> DeliveryAttempt | None:
    """Take the next attempt at a due delivery; None if another sender has it."""
    with transaction.atomic():
        won = Delivery.objects.filter(
            pk=delivery_id, status=Status.PENDING, next_attempt_at__lte=now
        ).update(status=Status.SENDING, attempts=F("attempts") + 1, sending_until=now + lease())
        if not won:
            return None
        delivery = Delivery.objects.select_related("channel").get(pk=delivery_id)
        return DeliveryAttempt.objects.create(
            delivery=delivery, number=delivery.attempts, started_at=now
        )


def attempt(attempt: DeliveryAttempt) -> DeliveryAttempt:
    """Send a claimed attempt's message and record what happened."""
    delivery = attempt.delivery
    channel = delivery.channel
    retry = delivery.execution_id is not None and attempt.number < MAX_ATTEMPTS
    # A test message is sent to a disabled channel too: one tries it before enabling it.
    if not channel.enabled and delivery.execution_id is not None:
        result, retry = destinations.Result(False, "not sent: the channel is disabled"), False
    elif isinstance(channel.url, Undecryptable) or isinstance(
        channel.signing_secret, Undecryptable
    ):
        answer = "not sent: no key in ENCRYPTION_KEYS decrypts the channel's URL or secret"
        result, retry = destinations.Result(False, answer), False
    else:
        message = destinations.Message(
            title=delivery.title,
            body=delivery.body,
            payload=delivery.payload,
            message_id=delivery.message_id,
            failure=delivery.event in ("failed", "failed_in_a_row"),
        )
        result = destinations.send(channel.url, message, signing_secret=channel.signing_secret)
    record(attempt, result, retry=retry, sent=channel.enabled)
    attempt.refresh_from_db()
    return attempt


def record(
    attempt: DeliveryAttempt, result: destinations.Result, *, retry: bool, sent: bool = True
) -> None:
    """Write down what an attempt came to; `sent`: whether it tried the destination at all
    (only then does it say whether the channel is failing)."""
    now = timezone.now()
    delivery = attempt.delivery
    answer = result.answer
    if result.ok:
        outcome = {"status": Status.SENT, "sent_at": now}
    elif not result.certain:
        outcome = {"status": Status.UNKNOWN}
        answer = f"{answer} ({NOT_AGAIN})"
    elif retry:
        # Counted from the attempt's start, so the schedule does not drift with slow answers.
        delay = RETRY_DELAYS[attempt.number - 1]
        outcome = {"status": Status.PENDING, "next_attempt_at": attempt.started_at + delay}
    else:
        outcome = {"status": Status.FAILED}
    with transaction.atomic():
        DeliveryAttempt.objects.filter(pk=attempt.pk).update(
            finished_at=now, ok=result.ok, answer=answer
        )
        # Also when a sender took this attempt for dead meanwhile: now it is known.
        Delivery.objects.filter(
            pk=delivery.pk,
            attempts=attempt.number,
            status__in=(Status.SENDING, Status.UNKNOWN),
        ).update(sending_until=None, **outcome)
        if sent:
            _mark_channel(delivery.channel_id, failed=not result.ok, answer=answer, now=now)


def _mark_channel(channel_id: int, *, failed: bool, answer: str, now: datetime) -> None:
    """A channel is failing from its first failed attempt to its next success."""
    channels = NotificationChannel.objects.filter(pk=channel_id)
    if failed:
        channels.filter(failing_since=None).update(failing_since=now)
        channels.update(last_error=answer)
    else:
        channels.exclude(failing_since=None).update(failing_since=None, last_error="")


def mark_interrupted(now: datetime | None = None) -> list[int]:
    """Deliveries whose sender died during an attempt, marked unknown: the ids of those
    marked now."""
    now = now or timezone.now()
    stale = Delivery.objects.filter(status=Status.SENDING, sending_until__lt=now)
    marked = []
    for delivery_id in list(stale.values_list("pk", flat=True)[:BATCH]):
        with transaction.atomic():
            if not stale.filter(pk=delivery_id).update(status=Status.UNKNOWN, sending_until=None):
                continue
            DeliveryAttempt.objects.filter(delivery_id=delivery_id, finished_at=None).update(
                finished_at=now, answer=INTERRUPTED
            )
        marked.append(delivery_id)
    return marked


def due(now: datetime) -> list[int]:
    return list(
        Delivery.objects.filter(status=Status.PENDING, next_attempt_at__lte=now)
        .order_by("next_attempt_at", "id")
        .values_list("pk", flat=True)[:BATCH]
    )


def send_one(delivery_id: int, now: datetime | None = None) -> DeliveryAttempt | None:
    claimed = claim(delivery_id, now or timezone.now())
    return attempt(claimed) if claimed is not None else None


def send_due(now: datetime | None = None) -> list[DeliveryAttempt]:
    """Mark interrupted attempts, then send every due delivery (a batch), one after another;
    the attempts this call made."""
    now = now or timezone.now()
    mark_interrupted(now)
    return [made for made in (send_one(pk, now) for pk in due(now)) if made is not None]


def serve(stop: threading.Event) -> None:
    """A worker's sender: until `stop`, send due deliveries, NOTIFICATION_SENDERS at once.

    Runs in a thread of `manage.py worker`, apart from the task workers that run jobs, so a
    slow destination never holds up a run.
    """
    with ThreadPoolExecutor(settings.NOTIFICATION_SENDERS, thread_name_prefix="notify") as pool:
        while not stop.is_set():
            sent_any = False
            try:
                now = timezone.now()
                mark_interrupted(now)
                ids = due(now)
                sent_any = bool(ids)
                list(pool.map(_send_in_thread, ids))
            except Exception:
                logger.exception("sending notifications failed; trying again")
            finally:
                close_old_connections()
            if not sent_any:
                stop.wait(settings.NOTIFICATION_POLL_SECONDS)


def _send_in_thread(delivery_id: int) -> None:
    try:
        send_one(delivery_id)
    except Exception:
        logger.exception("delivery %s: sending failed", delivery_id)
    finally:
        close_old_connections()
