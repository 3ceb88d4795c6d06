"""Times are shown in the person's zone and labelled with it: their choice, else their
browser's, else TIME_ZONE; the API answers in TIME_ZONE whoever asks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.template import Context, Template
from django.utils import timezone

from accounts import timezones
from accounts.models import Preferences
from accounts.tests.world import World, build_world
from executions.models import Execution

pytestmark = pytest.mark.django_db

CREATED = datetime(2026, 1, 15, 9, 0, 0, tzinfo=UTC)


@pytest.fixture
def world(sshd, settings) -> World:
    settings.TIME_ZONE = "Europe/Berlin"
    world = build_world(sshd)
    Execution.objects.filter(pk=world.ours.execution.pk).update(created_at=CREATED)
    return world


def created_as_shown(client, world: World) -> str:
    page = client.get(f"/executions/{world.ours.execution.pk}/").content.decode()
    start = page.index("<dt>Created</dt><dd>") + len("<dt>Created</dt><dd>")
    return page[start : page.index("</dd>", start)]


def test_without_a_choice_or_a_browser_zone_times_are_in_time_zone(world, client):
    client.force_login(world.users["viewer"])
    assert created_as_shown(client, world) == "2026-01-15 10:00:00 CET"


def test_the_browsers_zone_is_used_when_the_person_chose_none(world, client):
    client.force_login(world.users["viewer"])
    client.cookies[timezones.COOKIE] = "America/New_York"
    assert created_as_shown(client, world) == "2026-01-15 04:00:00 EST"


def test_a_cookie_that_names_no_zone_is_ignored(world, client):
    client.force_login(world.users["viewer"])
    for junk in ("../../etc/passwd", "Not/AZone", ""):
        client.cookies[timezones.COOKIE] = junk
        assert created_as_shown(client, world) == "2026-01-15 10:00:00 CET", junk


def test_a_chosen_zone_beats_the_browsers(world, client):
    viewer = world.users["viewer"]
    Preferences.objects.create(user=viewer, time_zone="Asia/Tokyo")
    client.force_login(viewer)
    client.cookies[timezones.COOKIE] = "America/New_York"
    assert created_as_shown(client, world) == "2026-01-15 18:00:00 JST"
    # Only the chooser's pages: another person still sees TIME_ZONE.
    client.force_login(world.users["operator"])
    client.cookies.pop(timezones.COOKIE)
    assert created_as_shown(client, world) == "2026-01-15 10:00:00 CET"


def test_people_choose_their_zone_and_can_go_back_to_automatic(world, client):
    viewer = world.users["viewer"]
    client.force_login(viewer)
    page = client.get("/preferences/").content.decode()
    assert "Times are shown in <strong>Europe/Berlin</strong>" in page
    assert "(the server's)" in page

    response = client.post("/preferences/", {"time_zone": "Asia/Tokyo"})
    assert response.status_code == 302
    assert Preferences.objects.get(user=viewer).time_zone == "Asia/Tokyo"
    assert "(your choice)" in client.get("/preferences/").content.decode()
    assert created_as_shown(client, world) == "2026-01-15 18:00:00 JST"

    refused = client.post("/preferences/", {"time_zone": "Mars/Olympus_Mons"})
    assert refused.status_code == 200
    assert "Select a valid choice" in refused.content.decode()
    assert Preferences.objects.get(user=viewer).time_zone == "Asia/Tokyo"

    client.post("/preferences/", {"time_zone": ""})
    client.cookies[timezones.COOKIE] = "America/New_York"
    assert created_as_shown(client, world) == "2026-01-15 04:00:00 EST"


def test_the_api_answers_in_time_zone_whatever_zone_the_person_sees(world, client):
    viewer = world.users["viewer"]
    Preferences.objects.create(user=viewer, time_zone="Asia/Tokyo")
    client.force_login(viewer)  # the browsable API, through the session
    body = client.get(f"/api/v1/executions/{world.ours.execution.pk}/").json()
    assert body["created_at"] == "2026-01-15T10:00:00+01:00"


def render(source: str, **context: object) -> str:
    return Template("{% load times %}" + source).render(Context(context))


def test_relative_times_carry_the_exact_time_labelled_with_its_zone():
    now = timezone.now()
    with timezone.override("Asia/Tokyo"):
        shown = render("{{ t|when }}", t=now - timedelta(minutes=3, seconds=10))
        exact = timezone.localtime(now - timedelta(minutes=3, seconds=10))
    assert shown == (
        f'<time datetime="{(now - timedelta(minutes=3, seconds=10)).isoformat()}" '
        f'title="{exact:%Y-%m-%d %H:%M:%S} JST">3\xa0minutes ago</time>'
    )
    assert ">just now<" in render("{{ t|when }}", t=now)
    assert ">in 2\xa0days<" in render("{{ t|when }}", t=now + timedelta(days=2, hours=1))
    assert render("{{ t|when|default:'never' }}", t=None) == "never"
