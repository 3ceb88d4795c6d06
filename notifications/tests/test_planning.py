"""Which channels hear of which outcome, and what they are told: real runs against the real
sshd, sent to a real SMTP server and a recording HTTP server."""

from __future__ import annotations

import base64
import json

import pytest
from django.conf import settings
from django.db.models import Q
from standardwebhooks.webhooks import Webhook as StandardVerifier

from executions import reactions, retries, services
from executions.models import Execution, ExecutionEvent, Status
from executions.tests.helpers import run, start
from jobs.models import Concurrency
from jobs.parameters import clean_definitions
from notifications import planning, sending
from notifications.models import Delivery, Event
from notifications.tests.helpers import make_channel

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]

# Prints 30 numbered lines, then fails on the server named "bad".
SCRIPT = 'for i in $(seq 1 30); do echo "line $i of $TSUBAME_SERVER"; done\n'
SCRIPT += 'test "$TSUBAME_SERVER" != bad || { echo "it broke" >&2; exit 3; }\n'


def finish(execution: Execution, status: Status) -> Execution:
    """End a queued run as `status` without running anything (as a worker would record it)."""
    services.claim_execution(execution.pk, "test")
    assert services._finish(execution.pk, status, "made", guard=Q(status=Status.RUNNING))
    return Execution.objects.get(pk=execution.pk)


def events_of(channel, execution: Execution | None = None) -> list[str]:
    deliveries = Delivery.objects.filter(channel=channel).order_by("id")
    if execution is not None:
        deliveries = deliveries.filter(execution=execution)
    return list(deliveries.values_list("event", flat=True))


@pytest.fixture
def servers(make_server):
    return [make_server(name="good"), make_server(name="bad")]


def test_each_outcome_reaches_the_channels_whose_rules_cover_it_with_the_right_text(
    team, servers, make_job, smtp_receiver, http_receiver
):
    failing = make_job(SCRIPT, servers, name="deploy")
    passing = make_job(SCRIPT, servers[:1], name="backup")
    mail = make_channel(team, smtp_receiver.url(), Event.FAILED, job=failing, name="mail")
    hook = make_channel(team, http_receiver.url + "/in", Event.STARTED, Event.SUCCEEDED)

    failed = run(failing)
    succeeded = run(passing)
    reactions.process_events()
    # The failing job has a rule of its own: the team's default (the hook) does not cover it.
    assert events_of(mail) == [Event.FAILED]
    assert events_of(hook) == [Event.STARTED, Event.SUCCEEDED]
    assert set(Delivery.objects.values_list("execution", flat=True)) == {failed.pk, succeeded.pk}

    attempts = sending.send_due()
    assert [a.ok for a in attempts] == [True, True, True]
    [message] = smtp_receiver.wait_for(1)
    assert message["Subject"] == f"[tsubame] deploy failed (#{failed.pk})"
    text = message.get_content().replace("\r\n", "\n")
    assert "Job: deploy (team ops)" in text
    assert "Outcome: Failed" in text
    assert "Trigger: System" in text
    assert f"Execution: {settings.SITE_URL}/executions/{failed.pk}/" in text
    assert "  good: Succeeded, exit 0, " in text
    assert "  bad: Failed, exit 3, " in text
    # The failed host's last 20 lines, stdout and stderr as they came; none of the good one's.
    tail = text.split("Last 20 lines of bad:\n", 1)[1].splitlines()
    # sshd may send the last stdout lines before or after the stderr one.
    assert sorted(tail) == sorted([f"  line {i} of bad" for i in range(12, 31)] + ["  it broke"])
    assert "line 11 of bad" not in text
    assert "of good" not in text

    requests = http_receiver.wait_for(2)
    verifier = StandardVerifier(hook.signing_secret)
    payloads = [verifier.verify(r.body, r.headers) for r in requests]
    assert [p["type"] for p in payloads] == ["execution.started", "execution.succeeded"]
    data = payloads[1]["data"]["execution"]
    assert (data["id"], data["job"]["name"], data["status"]) == (
        succeeded.pk,
        "backup",
        "succeeded",
    )
    assert data["hosts"][0]["server"] == "good"
    assert data["url"] == f"{settings.SITE_URL}/executions/{succeeded.pk}/"
    assert Delivery.objects.filter(status=Delivery.Status.SENT).count() == 3


def test_a_secret_the_failing_script_printed_is_masked_in_the_message(
    team, servers, make_job, smtp_receiver, http_receiver
):
    secret = "hunter2-very-secret"
    job = make_job(
        'echo "token is $TOKEN"; echo "$TOKEN" | base64; exit 1\n',
        servers[:1],
        parameters=clean_definitions([{"name": "TOKEN", "type": "secret"}]),
    )
    mail = make_channel(team, smtp_receiver.url(), Event.FAILED, name="mail")
    hook = make_channel(team, http_receiver.url, Event.FAILED, name="hook")
    execution = run(job, parameters={"TOKEN": secret})
    assert execution.status == Status.FAILED
    reactions.process_events()
    sending.send_due()
    [message] = smtp_receiver.wait_for(1)
    [request] = http_receiver.wait_for(1)
    text = message.get_content()
    assert "token is ***" in text
    encoded = base64.b64encode(secret.encode()).decode()
    for shown in (text, request.body.decode(), *Delivery.objects.values_list("body", flat=True)):
        assert secret not in shown
        assert encoded not in shown
    assert "token is ***" in json.loads(request.body)["data"]["execution"]["hosts"][0]["last_lines"]
    assert events_of(mail) == events_of(hook) == [Event.FAILED]


def test_recovered_and_n_in_a_row_follow_the_sequence_of_outcomes(team, servers, make_job):
    job = make_job(SCRIPT, servers[:1])
    every = make_channel(team, "json://127.0.0.1:9/every", Event.FAILED, Event.RECOVERED)
    third = make_channel(
        team, "json://127.0.0.1:9/third", Event.FAILED_IN_A_ROW, Event.RECOVERED, after_failures=3
    )
    F, S, C = Status.FAILED, Status.SUCCEEDED, Status.CANCELLED
    told: dict[str, list[str]] = {"every": [], "third": []}
    # A cancelled run neither breaks nor extends a run of failures; timed out and lost fail.
    for status in [F, F, C, Status.TIMED_OUT, S, F, S, S, Status.LOST, F, F, F]:
        execution = finish(start(job), status)
        reactions.process_events()
        told["every"].append(",".join(events_of(every, execution)))
        told["third"].append(",".join(events_of(third, execution)))
    assert told["every"] == ["failed", "failed", "", "failed", "recovered", "failed",
                             "recovered", "", "failed", "failed", "failed", "failed"]  # fmt: skip
    # The 3rd failure in a row once; recovered only after a run that reached 3.
    assert told["third"] == ["", "", "", "failed_in_a_row", "recovered", "", "", "", "",
                             "", "failed_in_a_row", ""]  # fmt: skip
    delivery = Delivery.objects.get(channel=third, event=Event.FAILED_IN_A_ROW, execution__status=F)
    assert "failed 3 times in a row" in delivery.title


def test_a_retried_run_notifies_once_after_its_last_attempt(team, servers, make_job):
    job = make_job(SCRIPT, servers[:1])
    job.retry_attempts, job.retry_delay_seconds = 2, 10
    job.save()
    channel = make_channel(team, "json://127.0.0.1:9/x", *Event.values, after_failures=1)
    first = finish(start(job), Status.FAILED)
    reactions.process_events()
    assert events_of(channel) == [Event.STARTED]  # the first attempt's start only
    attempt = first
    for number in (2, 3):
        attempt.refresh_from_db()
        [started] = retries.start_due_retries(now=attempt.retry_due_at)
        attempt = finish(Execution.objects.get(pk=started), Status.FAILED)
        assert attempt.attempt == number
        reactions.process_events()
    # Attempts 1 and 2 were retried: silent. The 3rd is the run's outcome, its first failure.
    assert events_of(channel) == [Event.STARTED, Event.FAILED_IN_A_ROW]
    assert Delivery.objects.get(event=Event.FAILED_IN_A_ROW).execution == attempt

    # The next run fails at first and succeeds on its retry: one "recovered", on the retry.
    second = finish(start(job), Status.FAILED)
    reactions.process_events()
    second.refresh_from_db()
    [retried] = retries.start_due_retries(now=second.retry_due_at)
    finish(Execution.objects.get(pk=retried), Status.SUCCEEDED)
    reactions.process_events()
    assert events_of(channel) == [Event.STARTED, Event.FAILED_IN_A_ROW, Event.STARTED,
                                  Event.RECOVERED]  # fmt: skip


def test_a_retry_given_up_notifies_its_failure_once(team, servers, make_job):
    job = make_job(SCRIPT, servers[:1])
    job.retry_attempts = 1
    job.save()
    channel = make_channel(team, "json://127.0.0.1:9/x", Event.FAILED)
    execution = finish(start(job), Status.FAILED)
    reactions.process_events()
    assert events_of(channel) == []
    job.enabled = False
    job.save()
    execution.refresh_from_db()
    assert retries.start_due_retries(now=execution.retry_due_at) == []
    # The given-up retry re-emits the failure, now final; both events once more change nothing.
    reactions.process_events()
    assert events_of(channel) == [Event.FAILED]
    for event in ExecutionEvent.objects.filter(execution=execution, kind=Status.FAILED):
        planning.plan_notifications(event)
    assert events_of(channel) == [Event.FAILED]


def test_the_same_event_planned_twice_makes_one_delivery(team, servers, make_job):
    job = make_job(SCRIPT, servers[:1])
    channel = make_channel(team, "json://127.0.0.1:9/x", Event.SUCCEEDED)
    execution = finish(start(job), Status.SUCCEEDED)
    event = execution.events.get(kind=Status.SUCCEEDED)
    planning.plan_notifications(event)
    # Its processor died before marking it processed: the next one plans it again.
    planning.plan_notifications(event)
    assert events_of(channel) == [Event.SUCCEEDED]


def test_missed_and_skipped_runs_and_cancellations_notify_who_asked(team, servers, make_job):
    job = make_job(SCRIPT, servers[:1], concurrency=Concurrency.SKIP)
    asked = make_channel(team, "json://127.0.0.1:9/a", Event.MISSED, Event.SKIPPED, Event.CANCELLED)
    not_asked = make_channel(team, "json://127.0.0.1:9/b", Event.FAILED, Event.SUCCEEDED)
    missed = start(job, missed="missed: no worker started it in time")
    running = start(job)
    skipped = start(job)
    finish(running, Status.CANCELLED)
    reactions.process_events()
    assert (missed.status, skipped.status) == (Status.MISSED, Status.SKIPPED)
    assert events_of(asked) == [Event.MISSED, Event.SKIPPED, Event.CANCELLED]
    assert events_of(not_asked) == []


def test_a_jobs_own_rule_replaces_the_team_default_and_one_without_events_mutes_it(
    team, servers, make_job
):
    loud = make_job(SCRIPT, servers[:1])
    muted = make_job(SCRIPT, servers[:1])
    default = make_channel(team, "json://127.0.0.1:9/d", Event.SUCCEEDED)
    from notifications.tests.helpers import add_rule

    add_rule(default, job=muted)  # no events
    for job in (loud, muted):
        finish(start(job), Status.SUCCEEDED)
    reactions.process_events()
    assert list(Delivery.objects.values_list("execution__job", flat=True)) == [loud.pk]


def test_disabled_channels_and_rules_and_other_teams_hear_nothing(
    team, other_team, servers, make_job
):
    job = make_job(SCRIPT, servers[:1])
    off = make_channel(team, "json://127.0.0.1:9/off", Event.SUCCEEDED)
    off.enabled = False
    off.save()
    rule_off = make_channel(team, "json://127.0.0.1:9/rule-off", Event.SUCCEEDED)
    rule_off.rules.update(enabled=False)
    make_channel(other_team, "json://127.0.0.1:9/other", Event.SUCCEEDED)
    finish(start(job), Status.SUCCEEDED)
    reactions.process_events()
    assert not Delivery.objects.exists()


def test_the_message_names_who_or_what_started_the_run(team, servers, make_job, make_member):
    from datetime import UTC, datetime

    from accounts.models import Role
    from executions.models import Trigger
    from jobs.models import Schedule, Webhook
    from notifications import messages

    job = make_job(SCRIPT, servers[:1], name="deploy")
    alice = make_member(team, Role.OPERATOR, username="alice")
    nightly = Schedule.objects.create(job=job, name="nightly", cron="0 2 * * *", timezone="UTC")
    push = Webhook.objects.create(job=job, name="push", key="k" * 40)
    slot = datetime(2026, 12, 3, 2, 0, tzinfo=UTC)
    by_hand = services.start_execution(job, trigger=Trigger.UI, triggered_by=alice)
    parent = finish(by_hand, Status.SUCCEEDED)
    cases = {
        "alice (Web UI)": by_hand,
        "schedule nightly for 2026-12-03 02:00 UTC": services.start_execution(
            job, trigger=Trigger.SCHEDULE, schedule=nightly, scheduled_for=slot
        ),
        "webhook push": services.start_execution(job, trigger=Trigger.WEBHOOK, webhook=push),
        f"chain, after #{parent.pk} deploy (Succeeded)": services.start_execution(
            job, trigger=Trigger.CHAIN, parent=parent
        ),
        f"retry, attempt 2 of #{parent.pk}": services.start_execution(
            job, trigger=Trigger.RETRY, retry_of=parent
        ),
    }
    for expected, execution in cases.items():
        composed = messages.compose(execution, Event.STARTED)
        assert f"Trigger: {expected}\n" in composed["body"]
        assert composed["payload"]["data"]["execution"]["trigger_text"] == expected


def test_last_lines_are_plain_text_and_shown_for_a_bounded_number_of_hosts(
    team, make_server, make_job, monkeypatch
):
    from notifications import messages

    monkeypatch.setattr(messages, "TAILED_HOSTS", 1)
    script = (
        r"printf '\033[31mred\033[0m text\n'; printf 'progress 10%%\rprogress 100%%\n';"
        r" head -c 2000 /dev/zero | tr '\0' x; echo; printf 'bin \001\002\377 end\n'; exit 1"
    )
    job = make_job(script, [make_server(name="a"), make_server(name="b")])
    execution = run(job)
    body = messages.compose(execution, Event.FAILED)["body"]
    tail = body.split("Last 4 lines of a:\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert tail == [
        "  red text",
        "  progress 100%",
        "  " + "x" * (messages.MAX_LINE - 1) + "…",
        "  bin \ufffd end",
    ]
    assert "Last 4 lines of b" not in body
    assert body.endswith("1 more failed servers: their output is on the execution's page.")
