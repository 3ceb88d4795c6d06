"""The scheduler fires each slot once, on Debian cron's DST rules, and handles an outage once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from executions import runner
from executions.models import Execution, Status, Trigger
from jobs import scheduler, schedules
from jobs.models import Concurrency, MissedRuns, Schedule
from jobs.parameters import clean_definitions
from jobs.services import save_job, save_schedule

pytestmark = pytest.mark.django_db


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.fixture
def job(make_server, make_job):
    return make_job("echo scheduled", [make_server()])


def schedule_from(job, cron: str, zone: str, start: datetime, **fields) -> Schedule:
    """A schedule whose first slot is the first after `start` (as if saved then)."""
    return Schedule.objects.create(
        job=job,
        cron=cron,
        timezone=zone,
        next_run_at=schedules.next_slot(cron, zone, start),
        **fields,
    )


def tick_every_minute(start: datetime, end: datetime) -> list[Execution]:
    """What ticks once a minute from `start` to `end` start (or record as missed)."""
    ids, now = [], start
    while now <= end:
        ids += scheduler.fire_due_schedules(now=now)
        now += timedelta(minutes=1)
    return list(Execution.objects.filter(pk__in=ids).order_by("scheduled_for", "id"))


def slots_run(executions: list[Execution]) -> list[str]:
    assert all(e.status == Status.QUEUED for e in executions), [e.summary for e in executions]
    return [f"{e.scheduled_for:%Y-%m-%d %H:%M}Z" for e in executions]


# The days clocks change in 2026: Europe/Berlin on 29 March and 25 October (02:00-03:00
# local is skipped, then repeated), America/New_York on 8 March (02:00-03:00 skipped) and
# 1 November (01:00-02:00 repeated); on Berlin's days New York changes nothing.
@pytest.mark.parametrize(
    ("zone", "cron", "day", "expected"),
    [
        # 02:30 does not exist: the run comes right after the gap, at 03:00 CEST.
        ("Europe/Berlin", "30 2 * * *", "2026-03-29", "2026-03-29 01:00Z"),
        # 02:30 happens twice: the run is the first one (CEST), not the second (CET).
        ("Europe/Berlin", "30 2 * * *", "2026-10-25", "2026-10-25 00:30Z"),
        ("America/New_York", "30 2 * * *", "2026-03-08", "2026-03-08 07:00Z"),
        ("America/New_York", "30 1 * * *", "2026-11-01", "2026-11-01 05:30Z"),
        ("America/New_York", "30 2 * * *", "2026-03-29", "2026-03-29 06:30Z"),
        ("America/New_York", "30 2 * * *", "2026-10-25", "2026-10-25 06:30Z"),
    ],
)
def test_a_fixed_time_slot_runs_once_on_a_dst_day(job, zone, cron, day, expected):
    start = at(f"{day}T00:00:00") - timedelta(hours=6)
    schedule_from(job, cron, zone, start)
    ran = tick_every_minute(start, start + timedelta(hours=36))
    that_day = [
        e for e in ran if f"{e.scheduled_for.astimezone(schedules.zone(zone)):%Y-%m-%d}" == day
    ]
    assert slots_run(that_day) == [expected]


def test_an_hourly_schedule_follows_real_time_across_the_spring_gap(job):
    schedule_from(job, "0 * * * *", "Europe/Berlin", at("2026-03-28T22:30:00"))
    spring = slots_run(tick_every_minute(at("2026-03-28T22:30:00"), at("2026-03-29T03:30:00")))
    # 00:00 and 01:00 CET, then 03:00 CEST: one run per real hour, none "at 02:00".
    assert spring == [
        "2026-03-28 23:00Z",
        "2026-03-29 00:00Z",
        "2026-03-29 01:00Z",
        "2026-03-29 02:00Z",
        "2026-03-29 03:00Z",
    ]


def test_an_hourly_schedule_runs_in_both_repeated_hours(job):
    schedule_from(job, "0 * * * *", "Europe/Berlin", at("2026-10-24T22:30:00"))
    autumn = slots_run(tick_every_minute(at("2026-10-24T22:30:00"), at("2026-10-25T02:30:00")))
    # 01:00 CEST, 02:00 CEST, 02:00 CET, 03:00 CET: four real hours, four runs.
    assert autumn == [
        "2026-10-24 23:00Z",
        "2026-10-25 00:00Z",
        "2026-10-25 01:00Z",
        "2026-10-25 02:00Z",
    ]


def test_a_scheduled_run_names_its_schedule_and_slot_and_its_inputs(job, make_server):
    job.parameters = clean_definitions([{"name": "MODE", "type": "string", "required": True}])
    job.save()
    other = make_server(name="other")
    schedule = schedule_from(job, "*/5 * * * *", "UTC", at("2026-05-01T10:01:00"))
    save_schedule(
        schedule, actor=None, source=Trigger.SYSTEM, parameters={"MODE": "nightly"}, servers=[other]
    )
    Schedule.objects.filter(pk=schedule.pk).update(next_run_at=at("2026-05-01T10:05:00"))
    [execution_id] = scheduler.fire_due_schedules(now=at("2026-05-01T10:05:02"))
    execution = Execution.objects.get(pk=execution_id)
    assert (execution.trigger, execution.schedule, execution.scheduled_for) == (
        Trigger.SCHEDULE,
        schedule,
        at("2026-05-01T10:05:00"),
    )
    assert execution.parameters == {"MODE": "nightly"}
    assert [h.server_name for h in execution.host_runs.all()] == ["other"]
    schedule.refresh_from_db()
    assert schedule.next_run_at == at("2026-05-01T10:10:00")


def test_two_schedulers_ticking_at_once_start_one_run_per_slot(job):
    schedule_from(job, "0 3 * * *", "UTC", at("2026-05-01T00:00:00"))
    now = at("2026-05-01T03:00:01")
    # Both read the schedule as due before either fires it.
    first, second = scheduler.due_schedules(now, 10), scheduler.due_schedules(now, 10)
    assert len(scheduler.fire(first[0], now)) == 1
    assert scheduler.fire(second[0], now) == []
    assert Execution.objects.count() == 1


def test_a_new_or_resumed_schedule_never_fires_at_once(job):
    schedule = Schedule(job=job, cron="* * * * *", timezone="UTC")
    save_schedule(schedule, actor=None, source=Trigger.SYSTEM)
    assert schedule.next_run_at > datetime.now(UTC)
    assert scheduler.fire_due_schedules() == []

    schedule.enabled = False
    save_schedule(schedule, actor=None, source=Trigger.SYSTEM, changed_fields=["enabled"])
    assert schedule.next_run_at is None
    assert scheduler.fire_due_schedules(now=datetime.now(UTC) + timedelta(hours=2)) == []


def test_slots_of_a_disabled_job_are_not_missed_when_it_is_enabled_again(job):
    schedule = schedule_from(job, "0 * * * *", "UTC", at("2026-05-01T00:30:00"))
    job.enabled = False
    save_job(job, actor=None, source=Trigger.SYSTEM, changed_fields=["enabled"])
    assert scheduler.fire_due_schedules(now=at("2026-05-01T05:00:00")) == []
    job.enabled = True
    save_job(job, actor=None, source=Trigger.SYSTEM, changed_fields=["enabled"])
    schedule.refresh_from_db()
    assert schedule.next_run_at > datetime.now(UTC)
    assert not Execution.objects.exists()


# A worker down from 09:00 to 15:00 on a daily 10:00 run.
DOWN_FROM, BACK_AT = at("2026-05-01T09:00:00"), at("2026-05-01T15:00:00")


@pytest.mark.parametrize(
    ("policy", "deadline_hours", "status"),
    [
        (MissedRuns.RUN_ONCE, 6, Status.QUEUED),  # 5 hours late, within 6: runs once
        (MissedRuns.RUN_ONCE, 4, Status.MISSED),  # past its deadline: recorded, not run
        (MissedRuns.SKIP, 6, Status.MISSED),
    ],
)
def test_a_slot_missed_during_an_outage_is_handled_once(job, policy, deadline_hours, status):
    schedule = schedule_from(
        job,
        "0 10 * * *",
        "UTC",
        DOWN_FROM,
        missed_runs=policy,
        start_deadline_seconds=deadline_hours * 3600,
    )
    ran = tick_every_minute(BACK_AT, BACK_AT + timedelta(minutes=10))
    assert [(e.status, e.scheduled_for) for e in ran] == [(status, at("2026-05-01T10:00:00"))]
    if status == Status.MISSED:
        assert ran[0].summary.startswith("missed: the run of 2026-05-01 10:00 UTC")
        assert list(ran[0].events.values_list("kind", flat=True)) == [Status.MISSED]
    schedule.refresh_from_db()
    assert schedule.next_run_at == at("2026-05-02T10:00:00")


def test_many_missed_slots_give_one_record_not_a_flood(job):
    schedule_from(job, "*/5 * * * *", "UTC", DOWN_FROM - timedelta(minutes=1))
    # Back 30 s after a slot: that one is on time (grace: 60 s), the 72 before it were missed.
    ran = tick_every_minute(BACK_AT + timedelta(seconds=30), BACK_AT + timedelta(minutes=3))
    assert [e.status for e in ran] == [Status.MISSED, Status.QUEUED]
    assert ran[0].summary.startswith(
        "missed: 72 runs from 2026-05-01 09:00 UTC to 2026-05-01 14:55 UTC"
    )
    assert ran[1].scheduled_for == BACK_AT


def test_run_once_runs_the_latest_missed_slot_once(job):
    schedule_from(job, "0 * * * *", "UTC", DOWN_FROM, missed_runs=MissedRuns.RUN_ONCE)
    ran = tick_every_minute(BACK_AT + timedelta(minutes=5), BACK_AT + timedelta(minutes=30))
    assert [(e.status, e.scheduled_for) for e in ran] == [(Status.QUEUED, BACK_AT)]


def test_a_schedule_obeys_its_jobs_overlap_rule(job):
    job.concurrency = Concurrency.SKIP
    job.save()
    blocking = Execution.objects.create(
        team=job.team,
        job=job,
        job_name=job.name,
        script="x",
        interpreter="/bin/sh",
        max_parallel=1,
        trigger=Trigger.API,
    )
    schedule_from(job, "0 3 * * *", "UTC", at("2026-05-01T00:00:00"))
    [execution_id] = scheduler.fire_due_schedules(now=at("2026-05-01T03:00:05"))
    execution = Execution.objects.get(pk=execution_id)
    assert execution.status == Status.SKIPPED
    assert f"run #{blocking.pk}" in execution.summary


def test_a_slot_that_cannot_start_says_why_on_the_schedule(job):
    job.parameters = clean_definitions(
        [{"name": "MODE", "type": "choice", "choices": ["a", "b"], "required": True}]
    )
    job.save()
    schedule = schedule_from(job, "0 3 * * *", "UTC", at("2026-05-01T00:00:00"))
    assert scheduler.fire_due_schedules(now=at("2026-05-01T03:00:05")) == []
    schedule.refresh_from_db()
    assert "MODE" in schedule.last_error
    assert schedule.next_run_at == at("2026-05-02T03:00:00")  # the next slot is not blocked


def test_an_idle_tick_is_one_query_whatever_the_number_of_schedules(job, django_assert_num_queries):
    for hour in range(50):
        schedule_from(job, f"0 {hour % 24} * * *", "UTC", at("2026-05-01T00:30:00"))
    with django_assert_num_queries(1):  # the due schedules: none
        assert scheduler.fire_due_schedules(now=at("2026-05-01T00:45:00")) == []


def test_a_scheduled_run_no_worker_started_by_its_deadline_is_missed_not_run(job):
    schedule = schedule_from(
        job, "0 3 * * *", "UTC", at("2026-05-01T00:00:00"), start_deadline_seconds=600
    )
    [execution_id] = scheduler.fire_due_schedules(now=at("2026-05-01T03:00:05"))
    execution = Execution.objects.get(pk=execution_id)
    assert execution.start_by == at("2026-05-01T03:10:00")
    # The workers were busy: a worker takes it long after (the test's dates are in the past).
    runner.run_execution(execution.pk)
    execution.refresh_from_db()
    assert execution.status == Status.MISSED
    assert execution.started_at is None
    assert "start deadline" in execution.summary
    assert list(execution.events.values_list("kind", flat=True)) == [Status.MISSED]
    assert schedule.pk == execution.schedule_id


def test_a_schedule_that_fails_to_fire_blocks_no_other(job, make_job, make_server, monkeypatch):
    other = make_job("true", [make_server(name="other")])
    broken = schedule_from(job, "0 3 * * *", "UTC", at("2026-05-01T00:00:00"))
    fine = schedule_from(other, "0 3 * * *", "UTC", at("2026-05-01T00:00:00"))
    start = scheduler._start

    def start_or_fail(schedule, slot, missed=""):
        if schedule.pk == broken.pk:
            raise RuntimeError("the database said no")
        return start(schedule, slot, missed)

    monkeypatch.setattr(scheduler, "_start", start_or_fail)
    [execution_id] = scheduler.fire_due_schedules(now=at("2026-05-01T03:00:05"))
    assert Execution.objects.get(pk=execution_id).schedule == fine
    broken.refresh_from_db()
    assert broken.next_run_at == at("2026-05-02T03:00:00")
    assert "the database said no" in broken.last_error


@pytest.mark.django_db(transaction=True)
def test_threads_fire_schedules_of_shared_jobs_once_each(make_job, make_server, settings):
    settings.SCHEDULE_FIRE_THREADS = 3
    server = make_server()
    jobs = [make_job("true", [server]) for _ in range(4)]
    for n in range(40):
        schedule_from(jobs[n % 4], "0 3 * * *", "UTC", at("2026-05-01T00:00:00"))
    fired = scheduler.fire_due_schedules(now=at("2026-05-01T03:00:05"), batch=5)
    assert len(fired) == 40
    assert Execution.objects.count() == 40
    assert scheduler.fire_due_schedules(now=at("2026-05-01T03:00:06")) == []


def test_saving_a_schedule_keeps_what_a_tick_fired_meanwhile(job):
    schedule = Schedule(job=job, cron="*/5 * * * *", timezone="UTC")
    save_schedule(schedule, actor=None, source=Trigger.SYSTEM)
    fired_slot = schedule.next_run_at
    # A tick fires that slot while a person has the schedule open in the editor.
    Schedule.objects.filter(pk=schedule.pk).update(
        next_run_at=fired_slot + timedelta(minutes=5),
        last_slot_at=fired_slot,
        last_error="that slot: the job has no target servers",
    )
    schedule.name = "renamed"
    save_schedule(schedule, actor=None, source=Trigger.SYSTEM, changed_fields=["name"])
    schedule.refresh_from_db()
    assert schedule.next_run_at == fired_slot + timedelta(minutes=5)  # not that slot again
    assert schedule.last_slot_at == fired_slot
    assert schedule.last_error == "that slot: the job has no target servers"


def test_a_schedule_whose_slots_cannot_be_computed_stops_alone(job):
    broken = schedule_from(job, "0 3 * * *", "UTC", at("2026-05-01T00:00:00"))
    fine = schedule_from(job, "0 3 * * *", "UTC", at("2026-05-01T00:00:00"))
    Schedule.objects.filter(pk=broken.pk).update(cron="0 3 * *")  # edited by hand
    [execution_id] = scheduler.fire_due_schedules(now=at("2026-05-01T03:00:05"))
    assert Execution.objects.get(pk=execution_id).schedule == fine
    broken.refresh_from_db()
    assert broken.next_run_at is None
    assert broken.last_error.startswith("cannot compute its next run")
