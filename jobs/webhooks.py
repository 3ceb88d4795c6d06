"""Receiving a webhook's deliveries (POST /hooks/<key>/): check, log, start the job's run.

Two ways to sign a delivery, chosen per webhook:
- Standard Webhooks: `webhook-id`, `webhook-timestamp` (Unix seconds, at most 5 minutes off
  our clock either way) and `webhook-signature`, a space-separated list of
  `v1,<base64 HMAC-SHA256 of "id.timestamp.body">` keyed with the base64-decoded part of the
  `whsec_...` secret.
- GitHub: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>` keyed with the whole
  secret text, `whsec_` included, as pasted into GitHub's "Secret" field, and
  `X-GitHub-Delivery`. GitHub signs neither a time nor its delivery id, so an id would guard
  against nothing: a body is accepted once, its signature being the replay key (GitHub's
  own redeliveries resend the same body). Its `ping` event (sent when the hook is set up)
  starts nothing.
During a rotation the previous secret is accepted as well, until it is retired.

The answers (JSON `{"detail": reason, "execution": id or null}`):
- 201: a run was recorded for the delivery (queued, waiting, skipped or joined, as the job's
  overlap rule decided; the detail says which);
- 200: nothing to run, and nothing for the sender to retry: the delivery id was accepted
  before (the execution is the first delivery's), the filter did not match, a GitHub ping;
- 400: a missing or malformed header, a body that is not a JSON object, a parameter value
  the job refuses (named); 401: no signature matches, or the timestamp is out of tolerance;
- 404: no such webhook, or a disabled one; 409: the job cannot start (disabled, no targets);
- 413: a body over WEBHOOK_MAX_BODY_BYTES; 429: over the webhook's rate limit.
Every answer but an unknown key's is logged as a WebhookDelivery.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone
from standardwebhooks.webhooks import Webhook as StandardSigner

from executions import services
from executions.models import Execution, Trigger
from jobs.models import Job, Webhook, WebhookDelivery, WebhookMode

TOLERANCE = timedelta(minutes=5)
RATE_WINDOW = timedelta(minutes=1)
# Rejected deliveries kept per webhook, for its managers to see; accepted ones all stay,
# since their ids guard against replays.
KEPT_REJECTED = 100
# Deliveries the UI and the API list per webhook, newest first.
LISTED_DELIVERIES = 100
MAX_ID_LENGTH = 200
# The signed content is "id.timestamp.body": an id is printable ASCII, so that its bytes are
# the ones the sender signed, and a timestamp has no sign, fraction or leading zero, so that
# the text we sign is the text the sender signed.
ID = re.compile(rf"[\x21-\x7e]{{1,{MAX_ID_LENGTH}}}")
# At most 10 digits: up to the year 2286, all a datetime can hold on every platform.
TIMESTAMP = re.compile(r"[1-9][0-9]{0,9}")
GITHUB_SIGNATURE = re.compile(r"sha256=([0-9a-fA-F]{64})")
# One or more keys (or list indices) separated by dots: `pull_request.head.ref`, `commits.0.id`.
PATH = re.compile(r"[^.\s]+(\.[^.\s]+)*")


def validate_secret(secret: str) -> None:
    """A secret given rather than made (the admin): the Standard Webhooks form."""
    key = secret.removeprefix("whsec_")
    try:
        decoded = base64.b64decode(key, validate=True)
    except binascii.Error:
        decoded = b""
    if not secret.startswith("whsec_") or len(decoded) < 24:
        raise ValidationError(
            "A secret is whsec_ followed by at least 24 random bytes in base64.",
            code="invalid_secret",
        )


def validate_path(path: str) -> None:
    if path and not PATH.fullmatch(path):
        raise ValidationError(
            f"{path!r} is not a dotted path: field names (or list positions) separated by "
            "dots, e.g. pull_request.head.ref.",
            code="invalid_path",
        )


def clean_parameter_map(job: Job, mapping: object) -> dict[str, str]:
    """{"PARAMETER": "dotted.path"}, each name one of the job's parameters."""
    if not isinstance(mapping, dict) or not all(
        isinstance(name, str) and isinstance(path, str) for name, path in mapping.items()
    ):
        raise ValidationError(
            'Give an object of parameter names to dotted paths, e.g. {"REF": "ref"}.',
            code="invalid",
        )
    known = {definition["name"] for definition in job.parameters}
    unknown = sorted(set(mapping) - known)
    if unknown:
        raise ValidationError(
            f"Job {job.name} has no parameter {', '.join(unknown)}.", code="unknown_parameter"
        )
    for path in mapping.values():
        if not path:
            raise ValidationError("A path is empty.", code="invalid_path")
        validate_path(path)
    return mapping


@dataclass(frozen=True)
class Outcome:
    status: int
    reason: str
    execution: Execution | None = None


class NotStarted(Exception):
    """The delivery starts nothing; `outcome` is the answer."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.outcome = Outcome(status, reason)


def receive(
    webhook_key: str, headers: Mapping[str, str], body: bytes, now: datetime | None = None
) -> Outcome:
    """Answer one request to /hooks/<webhook_key>/ (see the module docstring)."""
    webhook = Webhook.objects.select_related("job").filter(key=webhook_key).first()
    if webhook is None:
        return Outcome(404, "No such webhook.")
    headers = {name.lower(): value for name, value in headers.items()}
    # Logged only when well-formed: a header may carry what a database column cannot (NUL).
    if webhook.mode == WebhookMode.GITHUB:
        signature = GITHUB_SIGNATURE.fullmatch(headers.get("x-hub-signature-256", ""))
        delivery_id = f"sha256={signature[1].lower()}" if signature else ""
    else:
        delivery_id = headers.get("webhook-id", "")
        delivery_id = delivery_id if ID.fullmatch(delivery_id) else ""
    try:
        parameters = check(webhook, headers, body, now or timezone.now())
    except NotStarted as refused:
        return log_rejected(webhook, delivery_id, refused.outcome)
    return accept(webhook, delivery_id, parameters)


def check(
    webhook: Webhook, headers: Mapping[str, str], body: bytes, now: datetime
) -> dict[str, Any]:
    """The parameters a delivery starts the job with; NotStarted if it starts nothing.
    `headers` have lower-case names."""
    if not webhook.enabled:
        raise NotStarted(404, "This webhook is disabled.")
    limit = settings.WEBHOOK_MAX_BODY_BYTES
    if len(body) > limit:
        raise NotStarted(413, f"The body is larger than {limit} bytes.")
    if webhook.mode == WebhookMode.GITHUB:
        verify_github(webhook, headers, body)
    else:
        verify_standard(webhook, headers, body, now)
    # After the signature and counting runs started: requests anyone can send (unsigned)
    # must not use up the limit of the sender that signs.
    recent = webhook.deliveries.filter(accepted=True, received_at__gt=now - RATE_WINDOW)
    if recent.count() >= webhook.rate_limit_per_minute:
        raise NotStarted(429, f"Over the limit of {webhook.rate_limit_per_minute} per minute.")
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        raise NotStarted(400, "The body is not valid JSON.") from None
    if not isinstance(document, dict):
        raise NotStarted(400, "The body is not a JSON object.")
    if webhook.mode == WebhookMode.GITHUB and headers.get("x-github-event") == "ping":
        raise NotStarted(200, "Ping received; nothing to run.")
    if webhook.filter_path:
        found, value = lookup(document, webhook.filter_path)
        if not found or filter_text(value) != webhook.filter_value:
            # A 4xx, as for every delivery that starts nothing but a replay or a ping: the
            # sender's delivery log shows that this one did not run the job.
            raise NotStarted(
                422, f"Filtered out: {webhook.filter_path} is not {webhook.filter_value!r}."
            )
    parameters = {}
    for name, path in webhook.parameter_map.items():
        found, value = lookup(document, path)
        if found:  # a missing field gives no value: the parameter's default, if any
            parameters[name] = value
    return parameters


def secrets_of(webhook: Webhook) -> list[str]:
    return [secret for secret in (webhook.secret, webhook.previous_secret) if secret]


def verify_standard(
    webhook: Webhook, headers: Mapping[str, str], body: bytes, now: datetime
) -> None:
    missing = [
        name
        for name in ("webhook-id", "webhook-timestamp", "webhook-signature")
        if not headers.get(name)
    ]
    if missing:
        raise NotStarted(400, f"Missing header: {', '.join(missing)}.")
    msg_id, stamp = headers["webhook-id"], headers["webhook-timestamp"]
    if not ID.fullmatch(msg_id):
        raise NotStarted(400, f"webhook-id must be 1 to {MAX_ID_LENGTH} printable characters.")
    if not TIMESTAMP.fullmatch(stamp):
        raise NotStarted(400, "webhook-timestamp must be whole seconds since 1970.")
    try:
        sent_at = datetime.fromtimestamp(int(stamp), tz=UTC)
    except (OverflowError, OSError, ValueError):
        raise NotStarted(400, "webhook-timestamp is not a time this server can hold.") from None
    if abs(now - sent_at) > TOLERANCE:
        raise NotStarted(401, "webhook-timestamp is more than 5 minutes from our clock.")
    given = []
    for entry in headers["webhook-signature"].split():
        version, _, signature = entry.partition(",")
        if version == "v1":
            try:
                given.append(base64.b64decode(signature, validate=True))
            except binascii.Error:
                continue  # not base64: matches nothing
    if not given:
        raise NotStarted(400, "webhook-signature has no v1,<base64> signature.")
    try:
        text = body.decode()
    except UnicodeDecodeError:
        raise NotStarted(400, "The body is not UTF-8 text.") from None
    for secret in secrets_of(webhook):
        expected = StandardSigner(secret).sign(msg_id, sent_at, text).partition(",")[2]
        if any(hmac.compare_digest(base64.b64decode(expected), g) for g in given):
            return
    raise NotStarted(401, "No signature matches.")


def verify_github(webhook: Webhook, headers: Mapping[str, str], body: bytes) -> None:
    missing = [
        name
        for name in ("X-GitHub-Delivery", "X-Hub-Signature-256")
        if not headers.get(name.lower())
    ]
    if missing:
        raise NotStarted(400, f"Missing header: {', '.join(missing)}.")
    if not ID.fullmatch(headers["x-github-delivery"]):
        raise NotStarted(
            400, f"X-GitHub-Delivery must be 1 to {MAX_ID_LENGTH} printable characters."
        )
    given = GITHUB_SIGNATURE.fullmatch(headers["x-hub-signature-256"])
    if given is None:
        raise NotStarted(400, "X-Hub-Signature-256 must be sha256=<64 hex digits>.")
    for secret in secrets_of(webhook):
        expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        if hmac.compare_digest(expected, given[1].lower()):
            return
    raise NotStarted(401, "No signature matches.")


def lookup(document: Any, path: str) -> tuple[bool, Any]:
    """The value at a dotted path, and whether it is there (a JSON null is there)."""
    value = document
    for step in path.split("."):
        if isinstance(value, dict) and step in value:
            value = value[step]
        elif isinstance(value, list) and step.isdigit() and int(step) < len(value):
            value = value[int(step)]
        else:
            return False, None
    return True, value


def filter_text(value: Any) -> str:
    """What a filter's value is compared with: text as it is, anything else as JSON (true, 42)."""
    return value if isinstance(value, str) else json.dumps(value)


def accept(webhook: Webhook, delivery_id: str, parameters: dict[str, Any]) -> Outcome:
    """Start the job for a checked delivery, once per delivery id.

    The guard is the database's: the accepted delivery is inserted before the run starts, in
    the same transaction, and a unique constraint (WebhookDelivery `webhook_delivery_once`)
    refuses a second accepted row with the same id. Of two identical deliveries at the same
    moment, the second waits for the first's commit and fails there, starting nothing.
    """
    try:
        with transaction.atomic():
            delivery = WebhookDelivery.objects.create(
                webhook=webhook, delivery_id=delivery_id, accepted=True, status_code=201
            )
            execution = services.start_execution(
                webhook.job, trigger=Trigger.WEBHOOK, parameters=parameters, webhook=webhook
            )
            delivery.execution = execution
            delivery.reason = f"Run #{execution.pk}: {execution.status}."
            delivery.save(update_fields=["execution", "reason"])
    except IntegrityError:
        first = WebhookDelivery.objects.filter(
            webhook=webhook, delivery_id=delivery_id, accepted=True
        ).first()
        if first is None:
            raise  # not the replay guard
        run = f": run #{first.execution_id}" if first.execution_id else ""
        reason = f"Delivery {delivery_id} was received before{run}."
        outcome = Outcome(200, reason, first.execution)
        return log_rejected(webhook, delivery_id, outcome)
    except services.InvalidParameters as exc:
        reason = "; ".join(f"{name}: {' '.join(msgs)}" for name, msgs in exc.errors.items())
        return log_rejected(webhook, delivery_id, Outcome(400, f"Parameter {reason}"))
    except services.ExecutionError as exc:
        return log_rejected(webhook, delivery_id, Outcome(409, f"Not started: {exc}."))
    return Outcome(201, delivery.reason, execution)


def log_rejected(webhook: Webhook, delivery_id: str, outcome: Outcome) -> Outcome:
    """Record a delivery that started nothing, keeping the webhook's newest KEPT_REJECTED."""
    with transaction.atomic():
        WebhookDelivery.objects.create(
            webhook=webhook,
            delivery_id=delivery_id,
            status_code=outcome.status,
            reason=outcome.reason,
            execution=outcome.execution,
        )
        older = webhook.deliveries.filter(accepted=False).values_list("pk", flat=True)
        WebhookDelivery.objects.filter(pk__in=list(older[KEPT_REJECTED:])).delete()
    return outcome
