"""Sending one message to one destination URL, and checking such URLs.

Two kinds of destination:
- an http:// or https:// URL receives tsubame's JSON event, signed with the Standard
  Webhooks scheme (`webhook-id`, `webhook-timestamp`, `webhook-signature`, the headers
  tsubame's own inbound webhooks check), so that a receiver can verify it and drop a
  repeated id;
- any other URL is apprise's notation for a service (mailto://, slack://, discord://,
  msteams://, tgram://, ntfy://, json://, ...), and apprise speaks its protocol.
Either way the result says whether it arrived and what the destination answered, with
every part of the URL that may be a token blanked out.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import apprise
import requests
from django.conf import settings
from django.core.exceptions import ValidationError
from standardwebhooks.webhooks import Webhook as StandardSigner

from tsubame.crypto import Undecryptable

# Apprise services that notify the worker's own machine (a desktop, its syslog): a team's
# notifications have no business there.
LOCAL_SCHEMES = frozenset({"windows", "macosx", "dbus", "kde", "glib", "gnome", "qt", "syslog"})
SIGNED_SCHEMES = frozenset({"http", "https"})
MAX_ANSWER = 2000
# URL parts shorter than this are kept in answers: hosts' labels, ports, "hook" and the like.
MIN_SECRET_PART = 6


@dataclass(frozen=True)
class Message:
    title: str
    body: str
    # The signed JSON destinations' body (Standard Webhooks: type, timestamp, data).
    payload: dict[str, Any]
    # The same for every attempt at the same delivery, so a receiver can drop repeats.
    message_id: str
    failure: bool = False


@dataclass(frozen=True)
class Result:
    ok: bool
    answer: str


def _asset() -> apprise.AppriseAsset:
    # No plugins from the worker's home directory, no files written, no templates read, and
    # a bound on every service's network wait.
    return apprise.AppriseAsset(
        plugin_paths=[],
        storage_mode="memory",
        allow_templates=False,
        secure_logging=True,
        service_timeout=settings.NOTIFICATION_TIMEOUT_SECONDS,
    )


def scheme(url: str) -> str:
    return url.partition("://")[0].lower()


def is_signed(url: str) -> bool:
    return scheme(url) in SIGNED_SCHEMES


def validate_url(url: str) -> None:
    """Refuse what no delivery could use, naming why (the UI, the API and the admin)."""
    if "://" not in url:
        raise ValidationError(
            "A destination is a URL: https://... for signed JSON, or an apprise URL such as "
            "mailto://, slack://, discord://, msteams://, tgram://, ntfy:// or json://.",
            code="invalid_url",
        )
    if is_signed(url):
        parts = urlsplit(url)
        if not parts.hostname:
            raise ValidationError("This URL names no host.", code="invalid_url")
        try:
            parts.port  # noqa: B018 (it raises for a port that is no number or out of range)
        except ValueError as exc:
            raise ValidationError(
                f"This URL's port is not valid: {exc}.", code="invalid_url"
            ) from exc
        return
    if scheme(url) in LOCAL_SCHEMES:
        raise ValidationError(
            f"{scheme(url)}:// notifies the worker's own machine; choose a network service.",
            code="invalid_url",
        )
    if apprise.Apprise.instantiate(url, asset=_asset()) is None:
        raise ValidationError(
            f"apprise does not understand this {scheme(url)}:// URL (see apprise's "
            "documentation of the service for its form).",
            code="invalid_url",
        )


def shown_url(url: str) -> str:
    """The URL with its tokens and passwords hidden, for pages and the API."""
    if isinstance(url, Undecryptable):
        # Its scheme would be the ciphertext's start: say what to do instead.
        return "cannot be decrypted with ENCRYPTION_KEYS: enter the URL again"
    if is_signed(url):
        parts = urlsplit(url)
        port = f":{parts.port}" if parts.port else ""
        # A path, a query or a user:password@ may hold a token; the host says where it goes.
        hidden = parts.path.strip("/") or parts.query or parts.fragment or "@" in parts.netloc
        return f"{parts.scheme}://{parts.hostname}{port}{'/…' if hidden else ''}"
    plugin = apprise.Apprise.instantiate(url, asset=_asset())
    if plugin is None:
        return f"{scheme(url)}://…"
    # apprise's privacy mode keeps what it does not count as a secret: a json:// path, an
    # ntfy:// topic. Blanked as they are in answers.
    return scrub(plugin.url(privacy=True), url)


def secret_parts(url: str) -> list[str]:
    """Every part of `url` that may be a secret: user, password, path segments, query
    values (the host is kept: it says where a failing channel points)."""
    parts = urlsplit(url)
    candidates = [parts.username or "", parts.password or ""]
    candidates += parts.path.split("/")
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        candidates += [key, value]
    found = {unquote(part) for part in candidates} | set(candidates)
    if not is_signed(url):
        # apprise reads some services' tokens from where the host would be.
        found.add(parts.netloc.rpartition("@")[2])
    return sorted((part for part in found if len(part) >= MIN_SECRET_PART), key=len, reverse=True)


def scrub(text: str, url: str) -> str:
    for part in secret_parts(url):
        text = text.replace(part, "***")
    return text[:MAX_ANSWER]


def send(url: str, message: Message, *, signing_secret: str | None) -> Result:
    """Send `message` to `url` once; never raises for the destination's failures."""
    try:
        if is_signed(url):
            result = _send_signed(url, message, signing_secret)
        else:
            result = _send_apprise(url, message)
    except Exception as exc:  # a bug or a library's surprise: still an answer for the log
        logging.getLogger(__name__).exception("sending to a %s:// channel", scheme(url))
        result = Result(False, f"{type(exc).__name__}: {exc}")
    return Result(result.ok, scrub(result.answer, url))


def _send_signed(url: str, message: Message, signing_secret: str | None) -> Result:
    if not signing_secret:
        return Result(False, "this channel has no signing secret")
    body = json.dumps(message.payload, separators=(",", ":"), ensure_ascii=False)
    timestamp = datetime.now(UTC)
    signature = StandardSigner(signing_secret).sign(message.message_id, timestamp, body)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "tsubame",
        "webhook-id": message.message_id,
        "webhook-timestamp": str(int(timestamp.timestamp())),
        "webhook-signature": signature,
    }
    try:
        response = requests.post(
            url,
            data=body.encode(),
            headers=headers,
            timeout=settings.NOTIFICATION_TIMEOUT_SECONDS,
            # A redirect would resend a signed body somewhere the channel does not name.
            allow_redirects=False,
        )
    except requests.RequestException as exc:
        return Result(False, f"{type(exc).__name__}: {exc}")
    answer = f"HTTP {response.status_code} {response.reason}"
    text = response.text.strip()
    if text:
        answer += f": {text[:500]}"
    return Result(200 <= response.status_code < 300, answer)


def _send_apprise(url: str, message: Message) -> Result:
    notifier = apprise.Apprise(asset=_asset())
    if not notifier.add(url):
        return Result(False, "apprise does not understand this URL")
    result = notifier.notify(
        body=message.body,
        title=message.title,
        notify_type=apprise.NotifyType.FAILURE if message.failure else apprise.NotifyType.INFO,
        body_format=apprise.NotifyFormat.TEXT,
        timeout=settings.NOTIFICATION_TIMEOUT_SECONDS,
    )
    said = [
        f"{entry.level}: {entry.message}"
        for entry in result.logs()
        if entry.level in ("WARNING", "ERROR", "CRITICAL")
    ]
    if bool(result):
        return Result(True, "; ".join(said) or "accepted")
    status = getattr(result.status, "name", result.status)
    return Result(False, "; ".join(said) or f"apprise: {status}")
