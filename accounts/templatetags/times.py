"""How the UI shows a time: always with its zone, relative ones with the exact time on hover.

Times are in the zone that tsubame.middleware.TimeZoneMiddleware activated for the person.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django import template
from django.utils import timezone
from django.utils.dateformat import format as format_date
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.timesince import timesince, timeuntil

register = template.Library()

EXACT = "Y-m-d H:i:s T"  # T: the zone's abbreviation (CET, JST) or offset (+03)
JUST_NOW = timedelta(minutes=1)


@register.filter
def exact(value: datetime | None) -> str:
    """`{{ run.started_at|exact }}`: 2026-12-01 09:03:04 CET."""
    if value is None:
        return ""
    return format_date(timezone.localtime(value), EXACT)


@register.filter
def when(value: datetime | None) -> SafeString | str:
    """`{{ run.started_at|when }}`: "3 minutes ago", the exact time on hover."""
    if value is None:
        return ""
    now = timezone.now()
    if abs(now - value) < JUST_NOW:
        text = "just now"
    elif value < now:
        text = f"{timesince(value, now, depth=1)} ago"
    else:
        text = f"in {timeuntil(value, now, depth=1)}"
    return format_html(
        '<time datetime="{}" title="{}">{}</time>', value.isoformat(), exact(value), text
    )


@register.filter
def duration(seconds: float | None) -> str:
    """`{{ execution.duration|duration }}`: 12.3 s, 4 min 05 s, 2 h 03 min."""
    if seconds is None:
        return ""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {rest:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"
