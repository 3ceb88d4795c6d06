"""Which time zone a person sees times in: the one they chose, else their browser's, else
TIME_ZONE.

The browser's zone arrives in a cookie that tsubame/timezone.js sets on every page, so the
first page a new browser sees (usually the login page) is in TIME_ZONE and the rest in its
own zone. Every shown time is labelled with its zone (accounts.templatetags.times).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo, available_timezones

from django.conf import settings
from django.http import HttpRequest

from accounts.models import Preferences

COOKIE = "tsubame_tz"


class ZoneSource:
    CHOSEN = "chosen"
    BROWSER = "browser"
    DEFAULT = "default"


@dataclass(frozen=True)
class Zone:
    name: str
    source: str  # a ZoneSource

    @property
    def tzinfo(self) -> ZoneInfo:
        return ZoneInfo(self.name)


@functools.cache
def known_zones() -> frozenset[str]:
    return frozenset(available_timezones())


def choices() -> list[tuple[str, str]]:
    return [(name, name.replace("_", " ")) for name in sorted(known_zones())]


def chosen_zone(user: Any) -> str:
    """The zone the user picked on their preferences page, "" if none."""
    if not user.is_authenticated:
        return ""
    name = Preferences.objects.filter(user=user).values_list("time_zone", flat=True).first()
    return name if name in known_zones() else ""


def zone_for(request: HttpRequest) -> Zone:
    if name := chosen_zone(request.user):
        return Zone(name, ZoneSource.CHOSEN)
    # Only a name the zone database knows: the cookie is whatever the client sent.
    browser = request.COOKIES.get(COOKIE, "")
    if browser in known_zones():
        return Zone(browser, ZoneSource.BROWSER)
    return Zone(settings.TIME_ZONE, ZoneSource.DEFAULT)


def choose_zone(user: Any, name: str) -> None:
    """Save the user's zone; "" goes back to the browser's."""
    Preferences.objects.update_or_create(user=user, defaults={"time_zone": name})
