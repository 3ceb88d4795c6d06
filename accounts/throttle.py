"""Lock out password guessing: per username and per client address."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from accounts.models import LoginFailure


def client_address(request: object) -> str | None:
    return getattr(request, "META", {}).get("REMOTE_ADDR") or None


def locked_for(username: str, address: str | None) -> timedelta | None:
    """How much longer logins for this username or from this address are refused."""
    window = timedelta(seconds=settings.LOGIN_LOCKOUT_SECONDS)
    since = timezone.now() - window
    recent = LoginFailure.objects.filter(at__gt=since)
    checks = [(Q(username=username.lower()), settings.LOGIN_MAX_FAILURES_PER_USER)]
    if address:
        checks.append((Q(address=address), settings.LOGIN_MAX_FAILURES_PER_ADDRESS))
    for condition, limit in checks:
        times = list(recent.filter(condition).order_by("-at").values_list("at", flat=True)[:limit])
        if len(times) >= limit:
            # Locked until the oldest of the last `limit` failures leaves the window.
            return times[-1] + window - timezone.now()
    return None


def record_failure(username: str, address: str | None) -> None:
    LoginFailure.objects.create(username=username.lower(), address=address)


def forget_failures(username: str) -> None:
    LoginFailure.objects.filter(username=username.lower()).delete()
