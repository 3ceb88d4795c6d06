"""Sending one message to one destination URL, and checking such URLs.

Two kinds of destination:
- an http:// or https:// URL receives tsubame's JSON event, signed with the Standard
  Webhooks scheme (`webhook-id`, `webhook-timestamp`, `webhook-signature`, the headers
  tsubame's own inbound webhooks check), so that a receiver can verify it and drop a
  repeated id;
- any other URL is apprise's notation for a service (mailto://, slack://, discord://,
  msteams://, tgram://, ntfy://, json://, ...), and apprise speaks its protocol.
Either way the result says whether it arrived and what the destination answered, with
every part of the URL that may be a token blanked out, and whether a failure is certain:
one that came only after the request went out (no answer in time, a connection cut
mid-answer) may have arrived, so it is not sent again.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, quote, quote_plus, unquote, urlsplit

import apprise
import requests
import urllib3
from apprise.plugins.email import NotifyEmail
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
    # False for a failure after which the message may still have arrived.
    certain: bool = True


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
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (it raises for a port that is no number or out of range)
    except ValueError as exc:
        raise ValidationError(f"This URL cannot be read: {exc}.", code="invalid_url") from exc
    if is_signed(url):
        if not parts.hostname:
            raise ValidationError("This URL names no host.", code="invalid_url")
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
    try:
        parts = urlsplit(url)
        port = f":{parts.port}" if parts.port else ""
    except ValueError:  # refused when saved; only a value stored otherwise gets here
        return f"{scheme(url)}://…"
    if is_signed(url):
        # A path, a query or a user:password@ may hold a token; the host says where it goes.
        hidden = parts.path.strip("/") or parts.query or parts.fragment or "@" in parts.netloc
        return f"{parts.scheme}://{parts.hostname}{port}{'/…' if hidden else ''}"
    plugin = apprise.Apprise.instantiate(url, asset=_asset())
    if plugin is None:
        return f"{scheme(url)}://…"
    # apprise's privacy mode keeps what it does not count as a secret: a json:// path, an
    # ntfy:// topic, and query values that become headers (`+Authorization=Bearer ...`).
    # Its query is left out, the rest blanked as in answers.
    shown, _, query = plugin.url(privacy=True).partition("?")
    return scrub(shown, url) + ("?…" if query else "")


def secret_parts(url: str) -> list[str]:
    """Every part of `url` that may be a secret, as written and encoded the ways it may be
    echoed: user, password, path segments, query keys and values (the host of an http(s)
    URL is kept: it says where a failing channel points)."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
    except ValueError:  # refused when saved; only a value stored otherwise gets here
        return [url.partition("://")[2]]
    candidates = [parts.username or "", parts.password or ""]
    candidates += parts.path.split("/")
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        candidates += [key, value]
    for pair in parts.query.split("&"):
        candidates += pair.split("=", 1)
    if not is_signed(url):
        # apprise reads some services' tokens from where the host would be.
        candidates.append(netloc.rpartition("@")[2])
    found = set()
    for part in candidates:
        plain = unquote(part)
        found |= {part, plain, quote(plain, safe=""), quote(plain), quote_plus(plain)}
    return sorted((part for part in found if len(part) >= MIN_SECRET_PART), key=len, reverse=True)


def scrub(text: str, url: str) -> str:
    """`text` with every secret part of `url` blanked, without NUL characters (PostgreSQL
    text cannot hold them) and at most MAX_ANSWER long."""
    for part in secret_parts(url):
        text = text.replace(part, "***")
    return text.replace("\x00", "")[:MAX_ANSWER]


def send(url: str, message: Message, *, signing_secret: str | None) -> Result:
    """Send `message` to `url` once; never raises for the destination's failures."""
    try:
        if is_signed(url):
            result = _send_signed(url, message, signing_secret)
        else:
            result = _send_apprise(url, message)
    except Exception as exc:  # a bug or a library's surprise: still an answer for the log
        logging.getLogger(__name__).exception("sending to a %s:// channel", scheme(url))
        result = Result(False, f"{type(exc).__name__}: {exc}", certain=False)
    return Result(result.ok, scrub(result.answer, url), result.certain)


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
        return Result(False, _failure(exc), certain=_never_sent(exc))
    answer = f"HTTP {response.status_code} {response.reason}"
    text = response.text.strip()
    if text:
        answer += f": {text[:500]}"
    return Result(200 <= response.status_code < 300, answer)


def _never_sent(exc: requests.RequestException) -> bool:
    """Whether the request certainly did not reach the destination: no connection was made
    (refused, no such host, TLS failed, no answer to connecting). A read timeout or a
    connection cut later may come after the destination took the message."""
    if isinstance(exc, requests.ConnectTimeout | requests.exceptions.SSLError):
        return True
    reason = getattr(exc.args[0] if exc.args else None, "reason", None)
    return isinstance(exc, requests.ConnectionError) and isinstance(
        reason, urllib3.exceptions.NewConnectionError
    )


def _failure(exc: requests.RequestException) -> str:
    """What went wrong, in a line a person reads: the innermost reason, without urllib3's
    retry bookkeeping around it."""
    if isinstance(exc, requests.Timeout):
        return f"no answer within {settings.NOTIFICATION_TIMEOUT_SECONDS:g} s"
    reason = getattr(exc.args[0] if exc.args else None, "reason", None) or exc
    # "HTTPConnection(host='h', port=1): Failed to establish a new connection: [Errno 111] ..."
    text = str(reason).split("): ", 1)[-1]
    if isinstance(exc, requests.exceptions.SSLError):
        return f"TLS failed: {text}"
    if isinstance(exc, requests.ConnectionError):
        return f"cannot connect: {text}"
    return f"{type(exc).__name__}: {text}"


def _send_apprise(url: str, message: Message) -> Result:
    plugin = apprise.Apprise.instantiate(url, asset=_asset())
    if plugin is None:
        return Result(False, "apprise does not understand this URL")
    if "rto=" not in urlsplit(url).query:
        # apprise waits 4 s for an answer by default: a slow but working service would
        # count as failed though it took the message.
        plugin.socket_read_timeout = settings.NOTIFICATION_TIMEOUT_SECONDS
    notifier = apprise.Apprise(asset=_asset())
    notifier.add(plugin)
    began = time.monotonic()
    result = notifier.notify(
        body=message.body,
        title=message.title,
        notify_type=apprise.NotifyType.FAILURE if message.failure else apprise.NotifyType.INFO,
        body_format=apprise.NotifyFormat.TEXT,
        timeout=settings.NOTIFICATION_TIMEOUT_SECONDS,
    )
    waited = time.monotonic() - began
    said = [
        f"{entry.level}: {entry.message}"
        for entry in result.logs()
        if entry.level in ("WARNING", "ERROR", "CRITICAL")
    ]
    if bool(result):
        return Result(True, "; ".join(said) or "accepted")
    status = getattr(result.status, "name", str(result.status))
    # apprise tells "no answer in time" from "refused" only in its debug log; the time it
    # took does: a failure after the whole wait for an answer may have arrived. smtplib has
    # one time limit for connecting and for each answer; HTTP services a separate one that
    # starts once the request is sent.
    limit = (
        plugin.socket_connect_timeout
        if isinstance(plugin, NotifyEmail)
        else plugin.socket_read_timeout
    )
    certain = status != "TIMEOUT" and waited < 0.9 * limit
    return Result(False, "; ".join(said) or f"apprise: {status}", certain)
