"""/metrics: Prometheus figures from the database, for superusers' tokens and METRICS_TOKEN."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.db.models import Q
from django.db.models.functions import Now
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families
from rest_framework.test import APIClient

from accounts.models import ApiToken, Role
from executions import services
from executions.models import (
    ACTIVE_STATUSES,
    FINISHED_STATUSES,
    Execution,
    OutputTotal,
    Status,
    Trigger,
    WorkerHeartbeat,
)
from executions.tests.helpers import output, run, start

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]

METRICS_TOKEN = "scraper-secret-4f9a1c"
HISTOGRAMS = ["tsubame_execution_duration_seconds", "tsubame_execution_queue_wait_seconds"]


@pytest.fixture(autouse=True)
def metrics_token(settings) -> None:
    settings.METRICS_TOKEN = METRICS_TOKEN


def bearer(secret: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return client


def scrape(client: APIClient | None = None) -> dict[str, dict[tuple, float]]:
    """{sample name: {sorted label items: value}} of one scrape with METRICS_TOKEN."""
    response = (client or bearer(METRICS_TOKEN)).get("/metrics")
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    samples: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def labels(**values: str) -> tuple:
    return tuple(sorted(values.items()))


def ended(status: Status, job, *, trigger: Trigger = Trigger.SYSTEM, waited=3, ran=45):
    """A run of `job` that ended as `status`, having waited and run the given seconds."""
    execution = services.start_execution(job, trigger=trigger)
    services.claim_execution(execution.pk, "test")
    assert services._finish(execution.pk, status, "made", guard=Q(status=Status.RUNNING))
    asked = timezone.now() - timedelta(hours=1)
    Execution.objects.filter(pk=execution.pk).update(
        created_at=asked,
        started_at=asked + timedelta(seconds=waited),
        finished_at=asked + timedelta(seconds=waited + ran),
    )
    return Execution.objects.get(pk=execution.pk)


@pytest.mark.parametrize(
    ("who", "expected"),
    [
        ("anonymous", 401),
        ("viewer token", 403),
        ("manager token", 403),
        ("superuser token", 200),
        ("metrics token", 200),
        ("wrong metrics token", 401),
        ("wrong API token", 401),
        ("superuser session without a token", 401),
    ],
)
def test_metrics_answer_a_superuser_token_or_the_metrics_token_only(
    who, expected, team, make_member, superuser
):
    def token_of(user) -> str:
        return ApiToken.issue(user, "scrape")[1]

    clients = {
        "anonymous": lambda: APIClient(),
        "viewer token": lambda: bearer(token_of(make_member(team, Role.VIEWER))),
        "manager token": lambda: bearer(token_of(make_member(team, Role.MANAGER))),
        "superuser token": lambda: bearer(token_of(superuser)),
        "metrics token": lambda: bearer(METRICS_TOKEN),
        "wrong metrics token": lambda: bearer(METRICS_TOKEN + "x"),
        "wrong API token": lambda: bearer(token_of(superuser)[:-2] + "zz"),
        "superuser session without a token": lambda: logged_in(superuser),
    }
    response = clients[who]().get("/metrics")
    assert response.status_code == expected
    if expected == 401:
        assert response["WWW-Authenticate"] == 'Bearer realm="tsubame"'
    if expected != 200:
        assert b"tsubame_executions" not in response.content


def logged_in(user) -> APIClient:
    client = APIClient()
    client.force_login(user)
    return client


def test_without_a_metrics_token_set_no_bearer_text_is_taken_for_it(settings):
    settings.METRICS_TOKEN = None
    assert bearer("").get("/metrics").status_code == 401
    assert bearer("None").get("/metrics").status_code == 401


def test_every_known_job_shows_every_status_and_trigger_at_zero(make_job, other_team):
    job = make_job("true", [])
    elsewhere = make_job("true", [], team=other_team, name="backup")
    samples = scrape()

    for team, name in [(job.team.name, job.name), (other_team.name, elsewhere.name)]:
        for status in FINISHED_STATUSES:
            for trigger in Trigger:
                key = labels(team=team, job=name, status=status.value, trigger=trigger.value)
                assert samples["tsubame_executions_total"][key] == 0
        for status in ACTIVE_STATUSES:
            key = labels(team=team, job=name, status=status.value)
            assert samples["tsubame_executions_active"][key] == 0
        for family in [
            "tsubame_execution_duration_seconds",
            "tsubame_execution_queue_wait_seconds",
        ]:
            assert samples[f"{family}_count"][labels(team=team, job=name)] == 0
            assert samples[f"{family}_sum"][labels(team=team, job=name)] == 0
            assert samples[f"{family}_bucket"][labels(team=team, job=name, le="+Inf")] == 0
        assert samples["tsubame_output_bytes"][labels(team=team, job=name)] == 0
    # Never succeeded: no time at all rather than 1970.
    assert "tsubame_job_last_success_timestamp_seconds" not in samples
    assert samples["tsubame_workers_live"] == {(): 0}
    assert samples["tsubame_output_chunks_unindexed"] == {(): 0}


def test_ended_executions_are_counted_by_status_and_trigger_with_their_times(make_server, make_job):
    job = make_job("true", [make_server()])
    ended(Status.SUCCEEDED, job, waited=3, ran=45)
    last = ended(Status.SUCCEEDED, job, waited=3, ran=45)
    ended(Status.FAILED, job, waited=0.2, ran=700)
    ended(Status.CANCELLED, job, trigger=Trigger.API, waited=40, ran=2)
    start(job)  # queued, never claimed
    Execution.objects.filter(pk=last.pk).update(finished_at=last.finished_at + timedelta(hours=1))
    last.refresh_from_db()

    samples = scrape()

    team, name = job.team.name, job.name

    def counted(status: Status, trigger: Trigger = Trigger.SYSTEM) -> float:
        key = labels(team=team, job=name, status=status.value, trigger=trigger.value)
        return samples["tsubame_executions_total"][key]

    assert counted(Status.SUCCEEDED) == 2
    assert counted(Status.FAILED) == 1
    assert counted(Status.CANCELLED, Trigger.API) == 1
    assert counted(Status.CANCELLED) == 0
    assert counted(Status.TIMED_OUT) == 0
    active = samples["tsubame_executions_active"]
    assert active[labels(team=team, job=name, status="queued")] == 1
    assert active[labels(team=team, job=name, status="running")] == 0

    # Ran 45, 3645 (the one moved an hour on), 700 and 2 seconds.
    duration = samples["tsubame_execution_duration_seconds_bucket"]
    assert duration[labels(team=team, job=name, le="1.0")] == 0
    assert duration[labels(team=team, job=name, le="5.0")] == 1
    assert duration[labels(team=team, job=name, le="60.0")] == 2
    assert duration[labels(team=team, job=name, le="1800.0")] == 3
    assert duration[labels(team=team, job=name, le="7200.0")] == 4
    assert duration[labels(team=team, job=name, le="+Inf")] == 4
    assert samples["tsubame_execution_duration_seconds_sum"][labels(team=team, job=name)] == (
        pytest.approx(45 + 3645 + 700 + 2)
    )
    # Waited 3, 3, 0.2 and 40 seconds; the queued one has not started, so has no wait yet.
    wait = samples["tsubame_execution_queue_wait_seconds_bucket"]
    assert wait[labels(team=team, job=name, le="0.5")] == 1
    assert wait[labels(team=team, job=name, le="5.0")] == 3
    assert wait[labels(team=team, job=name, le="30.0")] == 3
    assert wait[labels(team=team, job=name, le="+Inf")] == 4
    assert samples["tsubame_execution_queue_wait_seconds_count"][labels(team=team, job=name)] == 4
    assert samples["tsubame_job_last_success_timestamp_seconds"][
        labels(team=team, job=name)
    ] == pytest.approx(last.finished_at.timestamp())


def test_a_deleted_jobs_executions_keep_counting_under_the_name_they_ran_as(make_server, make_job):
    job = make_job("true", [make_server()], name="old-name")
    ended(Status.SUCCEEDED, job)
    job.delete()

    samples = scrape()

    key = labels(team="ops", job="old-name", status="succeeded", trigger="system")
    assert samples["tsubame_executions_total"][key] == 1


def test_live_workers_are_those_with_a_recent_heartbeat(settings):
    settings.WORKER_HEARTBEAT_STALE_SECONDS = 60
    WorkerHeartbeat.started("web-1", 10)
    stale = WorkerHeartbeat.started("web-2", 20)
    WorkerHeartbeat.objects.filter(name=stale).update(beat_at=Now() - timedelta(seconds=61))

    assert scrape()["tsubame_workers_live"] == {(): 1}


def test_output_bytes_are_what_the_output_writer_stored(make_server, make_job):
    job = make_job("head -c 300000 /dev/zero | tr '\\0' x; echo; echo oops >&2", [make_server()])
    first, second = run(job), run(job)
    stored = len(output(first)) + len(output(second))
    assert stored == 2 * (300000 + 1 + 5)
    # Several transactions' worth: each one set the total it reached.
    assert first.chunks.count() > 1

    samples = scrape()

    assert OutputTotal.objects.get(execution=first).bytes == len(output(first))
    assert samples["tsubame_output_bytes"][labels(team="ops", job=job.name)] == stored


def test_a_scrape_reads_the_same_few_queries_however_many_executions(make_server, make_job):
    job = make_job("true", [make_server()])

    def queries() -> list[str]:
        client = bearer(METRICS_TOKEN)
        with CaptureQueriesContext(connection) as captured:
            scrape(client)
        return [query["sql"] for query in captured.captured_queries]

    ended(Status.SUCCEEDED, job)
    few = queries()
    for status in [Status.FAILED, Status.SUCCEEDED, Status.LOST, Status.TIMED_OUT]:
        ended(status, job)
    make_job("true", [], name="another")
    many = queries()

    # Teams, jobs, executions (grouped, with durations, waits and output sizes), the live
    # workers, and the chunks waiting for the search index: counted, not one of them read.
    assert len(few) == len(many) == 5
    (chunks,) = [sql for sql in many if "executions_logchunk" in sql]
    assert chunks.startswith("SELECT COUNT(*)")
    assert '"indexed"' in chunks
