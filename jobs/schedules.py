"""When a schedule's runs fall: cron expressions in a time zone, with Debian cron's DST rules.

cronsim implements them: a fixed-time slot (`30 2 * * *`) in the spring-forward gap runs
once, right after the gap; in the repeated autumn hour it runs once, the first time; an
expression with a wildcard minute or hour (`0 * * * *`) follows real time, so it runs in
both repeated hours and not in the missing one. Everything else here works in UTC.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError
from django.core.exceptions import ValidationError

from accounts.timezones import known_zones

# A schedule whose slots are years apart (`0 0 29 2 1`) still has some; cronsim gives up
# looking after 50 years.
HORIZON_YEARS = 50


def validate_cron(expression: str) -> None:
    """Five fields (minute hour day month weekday), as crontab(5) writes them."""
    fields = expression.split()
    if len(fields) != 5:
        raise ValidationError(
            f"A cron expression has 5 fields (minute hour day-of-month month day-of-week), "
            f"e.g. '30 2 * * *'; this one has {len(fields)}.",
            code="cron_fields",
        )
    try:
        CronSim(expression, datetime(2000, 1, 1, tzinfo=UTC))
    except CronSimError as exc:
        raise ValidationError(f"Not a valid cron expression: {exc}.", code="cron") from exc
    try:
        next_slots(expression, "UTC", datetime(2000, 1, 1, tzinfo=UTC), 1)
    except StopIteration:
        raise ValidationError(
            "This cron expression never matches a date (e.g. 30 February).", code="cron_never"
        ) from None


def validate_zone(name: str) -> None:
    if name not in known_zones():
        raise ValidationError(
            f"{name!r} is not a time zone name; use an IANA name such as Europe/Berlin, "
            "America/New_York or UTC.",
            code="timezone",
        )


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValidationError(f"{name!r} is not a time zone name.", code="timezone") from exc


def slots(expression: str, zone_name: str, after: datetime) -> Iterator[datetime]:
    """The expression's slots strictly after `after`, in order, as aware local times.

    Compared in UTC: started inside the repeated autumn hour, cronsim's wall clock could
    hand back a slot of the first pass through that hour, which has already been.
    """
    local = after.astimezone(zone(zone_name))
    for slot in CronSim(expression, local):
        if slot > after:  # aware datetimes compare as instants
            yield slot


def last_slots(expression: str, zone_name: str, until: datetime) -> tuple[datetime, datetime]:
    """The last two slots at or before `until`, latest first (for outages too long to walk)."""
    found: list[datetime] = []
    for slot in CronSim(expression, until.astimezone(zone(zone_name)), reverse=True):
        if slot <= until and (not found or slot < found[-1]):
            found.append(slot)
            if len(found) == 2:
                break
    return found[0], found[1]


def next_slots(expression: str, zone_name: str, after: datetime, count: int) -> list[datetime]:
    """Up to `count` slots after `after`; fewer only if the expression has no more."""
    found = []
    for slot in slots(expression, zone_name, after):
        found.append(slot)
        if len(found) == count:
            break
    if not found:
        raise StopIteration
    return found


def next_slot(expression: str, zone_name: str, after: datetime) -> datetime | None:
    """The first slot after `after` in UTC, None if there is none within cronsim's horizon."""
    try:
        return next_slots(expression, zone_name, after, 1)[0].astimezone(UTC)
    except StopIteration:
        return None


def dst_affected(slot: datetime) -> bool:
    """Whether a daylight-saving change falls within an hour of the slot.

    Such a slot was moved out of the spring-forward gap, lies in the repeated autumn hour,
    or is an hour's run next to a missing or repeated one: the slots a person wants marked.
    """
    tz, instant = slot.tzinfo, slot.astimezone(UTC)
    # In UTC: an aware local time plus an hour is wall-clock arithmetic in Python.
    hours = (instant + timedelta(hours=h) for h in (-1, 0, 1))
    return len({hour.astimezone(tz).utcoffset() for hour in hours}) > 1


@dataclass(frozen=True)
class Slot:
    """One run of a schedule, as previews show it."""

    local: datetime

    @property
    def utc(self) -> datetime:
        return self.local.astimezone(UTC)

    @property
    def dst_change(self) -> bool:
        return dst_affected(self.local)


def preview(expression: str, zone_name: str, after: datetime, count: int) -> list[Slot]:
    """The next `count` runs after `after` (validate the expression and zone first)."""
    try:
        return [Slot(slot) for slot in next_slots(expression, zone_name, after, count)]
    except StopIteration:
        return []
