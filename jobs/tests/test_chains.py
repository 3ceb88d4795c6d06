"""A job's run, when it ends, starts the jobs linked to that end: once per run, with the
values of the parameters they share, never in a cycle and never deeper than the limit."""

from __future__ import annotations

import pytest
from django.db.models import Q
from rest_framework.test import APIClient

from accounts.models import ApiToken, AuditEvent, Role, Source
from executions import reactions, services
from executions.models import Execution, ExecutionEvent, Status, Trigger
from executions.tests.helpers import right_after_the_select, start
from jobs import chains
from jobs.models import ChainLink, ChainWhen, Concurrency, Job
from jobs.parameters import clean_definitions
from jobs.services import save_job

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]


def ended(execution: Execution, status: Status) -> Execution:
    """End a run as `status` without running anything, as its worker, reaper or a cancel
    would; its event is written and not yet processed."""
    if status == Status.CANCELLED:
        assert services.cancel_execution(execution)
    else:
        assert services.claim_execution(execution.pk, "test")
        assert services._finish(execution.pk, status, "made", guard=Q(status=Status.RUNNING))
    return Execution.objects.get(pk=execution.pk)


def link(job: Job, next_job: Job, when: str = ChainWhen.SUCCEEDED) -> None:
    save_job(job, actor=None, source=Source.SYSTEM, links=[*links_of(job), (next_job, when)])


def links_of(job: Job) -> list[chains.Link]:
    return [(link.next_job, link.when) for link in job.links.select_related("next_job")]


def children(execution: Execution) -> list[Execution]:
    return list(Execution.objects.filter(parent=execution).order_by("id"))


def api_as(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {ApiToken.issue(user, 'chains')[1]}")
    return client


@pytest.fixture
def server(make_server):
    return make_server()


@pytest.fixture
def job(make_job, server):
    return make_job("true", [server], name="build")


def test_success_starts_the_next_job_with_the_shared_values(make_job, make_server, job):
    job.parameters = clean_definitions(
        [
            {"name": "VERSION"},
            {"name": "TOKEN", "type": "secret"},
            {"name": "ONLY_BUILD"},
        ]
    )
    job.save()
    elsewhere = make_server()
    deploy = make_job(
        "true",
        [elsewhere],
        name="deploy",
        parameters=clean_definitions(
            [
                {"name": "VERSION"},
                {"name": "TOKEN", "type": "secret"},
                {"name": "TARGET", "default": "staging"},
            ]
        ),
    )
    notify = make_job("true", [elsewhere], name="notify")
    link(job, deploy, ChainWhen.SUCCEEDED)
    link(job, notify, ChainWhen.FAILED)

    run = start(job, parameters={"VERSION": "1.4.2", "TOKEN": "hunter2!", "ONLY_BUILD": "x"})
    run = ended(run, Status.SUCCEEDED)
    reactions.process_events()

    [chained] = children(run)
    assert chained.job == deploy
    assert (chained.trigger, chained.parent, chained.chain_depth) == (Trigger.CHAIN, run, 1)
    # Secret values are erased when a run ends: the next job's own defaults apply.
    assert chained.parameters == {"VERSION": "1.4.2", "TARGET": "staging"}
    assert chained.secret_parameters is None
    assert [h.server for h in chained.host_runs.all()] == [elsewhere]
    assert chained.status == Status.QUEUED
    audit = AuditEvent.objects.get(action="run", object_id=str(chained.pk))
    assert (audit.source, audit.details["parent"]) == (Source.CHAIN, run.pk)


@pytest.mark.parametrize("status", [Status.FAILED, Status.TIMED_OUT, Status.LOST])
def test_a_failure_starts_the_failed_and_finished_links(make_job, server, job, status):
    on_success, on_failure, either = (
        make_job("true", [server], name=name) for name in ("on-success", "on-failure", "either")
    )
    link(job, on_success, ChainWhen.SUCCEEDED)
    link(job, on_failure, ChainWhen.FAILED)
    link(job, either, ChainWhen.FINISHED)

    run = ended(start(job), status)
    reactions.process_events()

    assert [c.job for c in children(run)] == [on_failure, either]


def test_success_starts_the_finished_links_too(make_job, server, job):
    either = make_job("true", [server], name="either")
    link(job, either, ChainWhen.FINISHED)
    run = ended(start(job), Status.SUCCEEDED)
    reactions.process_events()
    assert [c.job for c in children(run)] == [either]


def test_a_cancelled_run_starts_nothing(make_job, server, job):
    for when in ChainWhen.values:
        link(job, make_job("true", [server], name=f"after-{when}"), when)
    run = ended(start(job), Status.CANCELLED)
    assert reactions.process_events() == [ExecutionEvent.objects.get(execution=run).pk]
    assert children(run) == []


def test_a_skipped_run_starts_nothing(make_job, server, job):
    job.concurrency = Concurrency.SKIP
    job.save()
    link(job, make_job("true", [server], name="after"), ChainWhen.FINISHED)
    start(job)
    skipped = start(job)
    assert skipped.status == Status.SKIPPED
    reactions.process_events()
    assert children(skipped) == []


def test_processing_the_same_event_twice_starts_one_run(make_job, server, job, queued):
    link(job, make_job("true", [server], name="deploy"))
    run = ended(start(job), Status.SUCCEEDED)
    reactions.process_events()
    # As if the processor had died after the reactions, before marking the event processed.
    ExecutionEvent.objects.filter(execution=run).update(processed_at=None, leased_until=None)
    reactions.process_events()

    [chained] = children(run)
    assert queued == [run.pk, chained.pk]
    assert AuditEvent.objects.filter(action="run", object_id=str(chained.pk)).count() == 1


def test_two_reactions_at_once_start_one_run(make_job, server, job, queued):
    """A reaction slower than its lease runs twice at the same time: both check, both find
    no chained run yet, both start one; the (parent, job) constraint lets one in."""
    link(job, make_job("true", [server], name="deploy"))
    run = ended(start(job), Status.SUCCEEDED)
    event = ExecutionEvent.objects.select_related("execution").get(
        execution=run, kind=Status.SUCCEEDED
    )

    # The other processor's reaction runs whole between this one's check and its start.
    with right_after_the_select(lambda: chains.start_next_jobs(event)):
        chains.start_next_jobs(event)

    [chained] = children(run)
    assert queued == [run.pk, chained.pk]


def test_a_next_job_that_cannot_start_is_passed_over_and_the_event_processed(make_job, server, job):
    disabled = make_job("true", [server], name="disabled", enabled=False)
    fine = make_job("true", [server], name="fine")
    link(job, disabled)
    link(job, fine)
    run = ended(start(job), Status.SUCCEEDED)
    started = ExecutionEvent.objects.get(execution=run, kind="started")
    event = ExecutionEvent.objects.get(execution=run, kind=Status.SUCCEEDED)

    assert reactions.process_events() == [started.pk, event.pk]
    assert [c.job for c in children(run)] == [fine]


def test_the_depth_limit_stops_a_cycle_that_got_past_the_check(make_job, server, job, settings):
    assert settings.CHAIN_MAX_DEPTH == 10
    other = make_job("true", [server], name="other")
    # Two saves at once could each add half of a cycle; written here behind the check's back.
    ChainLink.objects.create(job=job, next_job=other, when=ChainWhen.FINISHED)
    ChainLink.objects.create(job=other, next_job=job, when=ChainWhen.FINISHED)

    run = start(job)
    runs = [run]
    while True:
        ended(run, Status.SUCCEEDED)
        reactions.process_events()
        [*started] = children(run)
        if not started:
            break
        [run] = started
        runs.append(run)

    assert [r.chain_depth for r in runs] == list(range(11))
    assert [r.job for r in runs] == [job, other] * 5 + [job]
    assert Execution.objects.get(pk=run.pk).summary == "made"  # left as it ended


def test_a_chained_run_obeys_the_next_jobs_overlap_rule(make_job, server, job):
    deploy = make_job("true", [server], name="deploy", concurrency=Concurrency.SKIP)
    link(job, deploy)
    in_the_way = start(deploy)

    run = ended(start(job), Status.SUCCEEDED)
    reactions.process_events()

    [chained] = children(run)
    assert (chained.status, chained.parent) == (Status.SKIPPED, run)
    assert chained.summary == f"skipped: run #{in_the_way.pk} of this job was queued"


def test_a_retried_run_chains_after_its_last_attempt(make_job, server, job):
    job.retry_attempts = 1
    job.save()
    after = make_job("true", [server], name="after")
    link(job, after, ChainWhen.FAILED)

    first = ended(start(job), Status.FAILED)
    reactions.process_events()
    assert children(first) == []

    second = services.rerun_execution(first, trigger=Trigger.RETRY, only_failed=True, retry=True)
    second = ended(second, Status.FAILED)
    reactions.process_events()
    [chained] = children(second)
    assert (chained.job, chained.chain_depth) == (after, 1)


def test_a_cycle_is_refused_when_saved(make_job, server, job):
    test = make_job("true", [server], name="test")
    deploy = make_job("true", [server], name="deploy")
    link(job, test)
    link(test, deploy)
    with pytest.raises(chains.ValidationError, match="cycle: deploy -> build -> test -> deploy"):
        save_job(deploy, actor=None, source=Source.SYSTEM, links=[(job, ChainWhen.FAILED)])
    with pytest.raises(chains.ValidationError, match="cycle: build -> build"):
        save_job(job, actor=None, source=Source.SYSTEM, links=[(job, ChainWhen.FAILED)])
    assert links_of(deploy) == []
    assert links_of(job) == [(test, ChainWhen.SUCCEEDED)]


def test_a_job_that_moves_team_leaves_its_links_behind(make_job, server, job, other_team):
    before, after = (make_job("true", [server], name=name) for name in ("before", "after"))
    link(before, job)
    link(job, after)
    job.team = other_team
    job.save()
    job.servers.clear()
    save_job(job, actor=None, source=Source.SYSTEM, changed_fields=["team"])
    assert ChainLink.objects.count() == 0


# --- the API ---------------------------------------------------------------------------


@pytest.fixture
def manager(make_member, team):
    return make_member(team, Role.MANAGER)


def test_the_api_sets_and_shows_the_next_jobs(make_job, server, job, manager):
    deploy = make_job("true", [server], name="deploy")
    api = api_as(manager)
    then = [{"job": deploy.pk, "when": "succeeded"}]

    response = api.patch(f"/api/v1/jobs/{job.pk}/", {"then": then}, format="json")

    assert response.status_code == 200, response.json()
    assert response.json()["then"] == then
    assert api.get(f"/api/v1/jobs/{job.pk}/").json()["then"] == then
    assert links_of(job) == [(deploy, ChainWhen.SUCCEEDED)]
    audit = AuditEvent.objects.filter(action="change", object_id=str(job.pk)).latest("id")
    assert audit.details == {"fields": ["links"]}


def test_the_api_refuses_a_cycle(make_job, server, job, manager):
    test = make_job("true", [server], name="test")
    link(job, test)
    api = api_as(manager)

    back = api.patch(
        f"/api/v1/jobs/{test.pk}/", {"then": [{"job": job.pk, "when": "failed"}]}, format="json"
    )
    itself = api.patch(
        f"/api/v1/jobs/{job.pk}/", {"then": [{"job": job.pk, "when": "failed"}]}, format="json"
    )

    assert back.status_code == 400
    assert back.json()["errors"]["then"] == [
        "these links would make a cycle: test -> build -> test"
    ]
    assert itself.status_code == 400
    assert itself.json()["errors"]["then"] == ["these links would make a cycle: build -> build"]
    assert links_of(test) == []


def test_the_api_refuses_another_teams_job(
    make_job, make_server, job, manager, superuser, other_team
):
    foreign = make_job("true", [make_server(team=other_team)], name="foreign")
    then = {"then": [{"job": foreign.pk, "when": "succeeded"}]}

    as_manager = api_as(manager).patch(f"/api/v1/jobs/{job.pk}/", then, format="json")
    as_superuser = api_as(superuser).patch(f"/api/v1/jobs/{job.pk}/", then, format="json")

    # The manager cannot see it: for them it does not exist.
    assert as_manager.status_code == 400
    assert "does not exist" in str(as_manager.json()["errors"]["then"])
    assert as_superuser.status_code == 400
    assert as_superuser.json()["errors"]["then"] == ["not jobs of team ops: foreign"]
    assert links_of(job) == []


def test_the_api_shows_a_runs_parent_and_children(make_job, server, job, manager):
    deploy = make_job("true", [server], name="deploy")
    link(job, deploy)
    run = ended(start(job), Status.SUCCEEDED)
    reactions.process_events()
    [chained] = children(run)
    api = api_as(manager)

    parent_body = api.get(f"/api/v1/executions/{run.pk}/").json()
    child_body = api.get(f"/api/v1/executions/{chained.pk}/").json()

    assert (parent_body["parent"], parent_body["chain_depth"]) == (None, 0)
    assert parent_body["children"] == [chained.pk]
    assert (child_body["parent"], child_body["chain_depth"], child_body["trigger"]) == (
        run.pk,
        1,
        "chain",
    )
    assert child_body["children"] == []
    listed = {e["id"]: e for e in api.get("/api/v1/executions/").json()["results"]}
    assert listed[run.pk]["children"] == [chained.pk]


# --- the web UI ------------------------------------------------------------------------


def job_form_post(job: Job, **then: list[Job]) -> dict[str, object]:
    post: dict[str, object] = {
        "team": job.team_id,
        "name": job.name,
        "interpreter": job.interpreter,
        "script": job.script,
        "servers": [s.pk for s in job.servers.all()],
        "parameters": "[]",
        "max_parallel": job.max_parallel,
        "then_shown": "True",
    }
    for when, jobs in then.items():
        post[f"then_{when}"] = [j.pk for j in jobs]
    return post


def test_the_job_form_sets_the_next_jobs_and_the_job_page_shows_them(
    make_job, server, job, manager, client
):
    deploy, notify = (make_job("true", [server], name=name) for name in ("deploy", "notify"))
    client.force_login(manager)

    form_page = client.get(f"/jobs/{job.pk}/edit/").content.decode()
    assert "Then run" in form_page
    response = client.post(
        f"/jobs/{job.pk}/edit/", job_form_post(job, succeeded=[deploy], failed=[notify])
    )

    assert response.status_code == 302
    assert links_of(job) == [(deploy, ChainWhen.SUCCEEDED), (notify, ChainWhen.FAILED)]
    audit = AuditEvent.objects.filter(action="change", object_id=str(job.pk)).latest("id")
    assert "links" in audit.details["fields"]
    page = client.get(f"/jobs/{job.pk}/").content.decode()
    assert "Then runs" in page
    assert f'href="/jobs/{deploy.pk}/">deploy</a> <span class="muted">when it succeeds' in page
    # Shown ticked when the form opens again.
    form_page = client.get(f"/jobs/{job.pk}/edit/").content.decode()
    assert f'name="then_succeeded" value="{deploy.pk}"' in form_page.replace(
        ' id="id_then_succeeded_0"', ""
    ).replace(" checked", "")


def test_a_job_form_post_without_the_next_jobs_keeps_them(make_job, server, job, manager, client):
    deploy = make_job("true", [server], name="deploy")
    link(job, deploy)
    client.force_login(manager)
    post = job_form_post(job)
    del post["then_shown"]
    assert client.post(f"/jobs/{job.pk}/edit/", post).status_code == 302
    assert links_of(job) == [(deploy, ChainWhen.SUCCEEDED)]


def test_the_job_form_refuses_a_cycle(make_job, server, job, manager, client):
    test = make_job("true", [server], name="test")
    link(job, test)
    client.force_login(manager)

    back = client.post(f"/jobs/{test.pk}/edit/", job_form_post(test, finished=[job]))
    itself = client.post(f"/jobs/{job.pk}/edit/", job_form_post(job, failed=[job]))

    assert back.status_code == 200
    assert "these links would make a cycle: test -&gt; build -&gt; test" in back.content.decode()
    # A job is not offered as its own next job: ticking it anyway is an invalid choice.
    assert itself.status_code == 200
    assert "Select a valid choice" in itself.content.decode()
    assert links_of(test) == []


def test_the_execution_page_shows_parent_and_children(make_job, server, job, manager, client):
    deploy = make_job("true", [server], name="deploy")
    link(job, deploy)
    run = ended(start(job), Status.SUCCEEDED)
    reactions.process_events()
    [chained] = children(run)
    client.force_login(manager)

    parent_page = client.get(f"/executions/{run.pk}/").content.decode()
    child_page = client.get(f"/executions/{chained.pk}/").content.decode()
    facts = client.get(f"/executions/{chained.pk}/facts/").content.decode()

    assert (
        f'<a class="tag" href="/executions/{chained.pk}/">#{chained.pk} deploy</a>' in parent_page
    )
    started_by = f'Started by</dt><dd><a href="/executions/{run.pk}/">#{run.pk}</a> (chain)'
    assert started_by in child_page
    assert started_by in facts


def test_the_admin_shows_the_next_jobs_and_keeps_them_when_the_job_is_saved(
    make_job, server, job, superuser, client
):
    deploy = make_job("true", [server], name="deploy")
    link(job, deploy)
    client.force_login(superuser)
    page = client.get(f"/admin/jobs/job/{job.pk}/change/").content.decode()
    assert "Then runs" in page
    assert "deploy" in page

    [shown] = job.links.all()
    response = client.post(
        f"/admin/jobs/job/{job.pk}/change/",
        {
            "team": job.team_id,
            "name": job.name,
            "interpreter": job.interpreter,
            "script": job.script,
            "servers": [server.pk],
            "max_parallel": 3,
            "links-TOTAL_FORMS": 1,
            "links-INITIAL_FORMS": 1,
            "links-0-id": shown.pk,
            "links-0-job": job.pk,
        },
    )
    assert response.status_code == 302
    assert Job.objects.get(pk=job.pk).max_parallel == 3
    assert links_of(job) == [(deploy, ChainWhen.SUCCEEDED)]
