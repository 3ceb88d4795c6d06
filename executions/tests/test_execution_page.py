"""The execution page says when a run was created, started and finished, and how long it took."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from accounts.tests.world import World, build_world
from executions.models import Execution, Status

pytestmark = pytest.mark.django_db

CREATED = datetime(2026, 3, 1, 8, 59, 58, tzinfo=UTC)
STARTED = datetime(2026, 3, 1, 9, 0, 0, tzinfo=UTC)


@pytest.fixture
def world(sshd) -> World:
    return build_world(sshd)


def facts(client, execution: Execution) -> dict[str, str]:
    """{label: value} of the page's facts list, markup removed."""
    page = client.get(f"/executions/{execution.pk}/").content.decode()
    block = re.search(r'<dl class="facts" id="execution-facts">(.*?)</dl>', page, re.S)
    assert block, page
    return {
        label: re.sub(r"<[^>]+>", "", value).strip()
        for label, value in re.findall(r"<dt>(.*?)</dt><dd>(.*?)</dd>", block.group(1), re.S)
    }


def test_a_finished_execution_shows_its_start_end_and_duration(world, client, settings):
    settings.TIME_ZONE = "UTC"
    execution = world.ours.execution
    Execution.objects.filter(pk=execution.pk).update(
        status=Status.SUCCEEDED,
        created_at=CREATED,
        started_at=STARTED,
        finished_at=STARTED + timedelta(seconds=125.5),
    )
    client.force_login(world.users["viewer"])
    assert facts(client, execution) == {
        "Trigger": "System",
        "Team": "ours",
        "Created": "2026-03-01 08:59:58 UTC",
        "Started": "2026-03-01 09:00:00 UTC",
        "Finished": "2026-03-01 09:02:05 UTC",
        "Duration": "2 min 05 s",
    }


def test_a_queued_execution_has_not_started_and_one_cancelled_in_the_queue_never_will(
    world, client
):
    execution = world.ours.execution
    client.force_login(world.users["viewer"])
    shown = facts(client, execution)
    assert (shown["Started"], shown["Finished"], shown["Duration"]) == ("not yet", "not yet", "—")

    Execution.objects.filter(pk=execution.pk).update(status=Status.CANCELLED, finished_at=STARTED)
    shown = facts(client, execution)
    assert (shown["Started"], shown["Duration"]) == ("never", "—")


def test_no_separator_dangles_before_the_trigger_when_there_is_no_summary(world, client):
    execution = world.ours.execution
    assert execution.summary == ""
    client.force_login(world.users["viewer"])
    page = client.get(f"/executions/{execution.pk}/").content.decode()
    panel = page[page.index('<div class="panel">') : page.index('id="progress-text"')]
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", panel)).strip()
    assert "·" not in text, text
    assert text.startswith("Trigger System"), text


def test_the_lists_show_start_time_and_duration(world, client, settings):
    settings.TIME_ZONE = "UTC"
    execution = world.ours.execution
    Execution.objects.filter(pk=execution.pk).update(
        status=Status.SUCCEEDED, started_at=STARTED, finished_at=STARTED + timedelta(seconds=3)
    )
    client.force_login(world.users["viewer"])
    for url in ("/executions/", f"/jobs/{world.ours.job.pk}/"):
        page = client.get(url).content.decode()
        assert 'title="2026-03-01 09:00:00 UTC"' in page, url
        assert "3.0 s" in page, url


def test_the_facts_fragment_is_the_pages_facts_for_those_who_may_see_the_execution(world, client):
    """The viewer swaps it in as the run goes on (logviewer.js); it shows no one else's run."""
    execution = world.ours.execution
    Execution.objects.filter(pk=execution.pk).update(
        status=Status.SUCCEEDED, started_at=STARTED, finished_at=STARTED + timedelta(seconds=3)
    )
    assert client.get(f"/executions/{execution.pk}/facts/").status_code == 302  # to log in
    client.force_login(world.users["viewer"])
    fragment = client.get(f"/executions/{execution.pk}/facts/").content.decode()
    page = client.get(f"/executions/{execution.pk}/").content.decode()
    block = re.search(r'<dl class="facts" id="execution-facts">.*?</dl>', page, re.S)
    assert block, page
    assert fragment.strip().endswith(block.group(0))
    assert "3.0 s" in fragment
    theirs = world.theirs.execution
    assert client.get(f"/executions/{theirs.pk}/facts/").status_code == 404
