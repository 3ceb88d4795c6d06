"""Making channels and rules the way the services do, for the notification tests."""

from __future__ import annotations

from accounts.models import Source, Team
from jobs.models import Job
from notifications import services
from notifications.models import NotificationChannel, NotificationRule

# Never sent to: it names a host under .test, which no resolver answers.
HOOK_URL = "https://hooks.example.test/services/T0K3N-abcdef-123456"


def make_channel(
    team: Team,
    url: str,
    *events: str,
    job: Job | None = None,
    after_failures: int = 3,
    name: str | None = None,
) -> NotificationChannel:
    """A channel of `team` with one rule: `events` of `job` (None: the team's default)."""
    channel = services.save_channel(
        NotificationChannel(team=team, name=name or f"channel-{url[-30:]}", url=url),
        actor=None,
        source=Source.SYSTEM,
    )
    add_rule(channel, *events, job=job, after_failures=after_failures)
    return channel


def add_rule(
    channel: NotificationChannel, *events: str, job: Job | None = None, after_failures: int = 3
) -> NotificationRule:
    rule = NotificationRule(
        channel=channel, job=job, events=list(events), after_failures=after_failures
    )
    return services.save_rule(rule, actor=None, source=Source.SYSTEM)
