"""The forms and the layout in a real browser: the target picker, the server form, a phone."""

from __future__ import annotations

import pytest
from django.urls import reverse

from accounts.models import Membership, Role, Team
from accounts.roles import role_group
from servers.models import Server, Tag
from tsubame.tests.browser import log_in, screenshot

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(240)]

PASSWORD = "pw-ada-lovelace-123!"
PHONE = {"width": 390, "height": 844}


def manager(django_user_model, team: Team):
    user = django_user_model.objects.create_user("ada", password=PASSWORD)
    Membership.objects.create(team=team, user=user, role=role_group(Role.MANAGER))
    return user


def add_servers(team: Team, names: list[str], tags: dict[str, list[str]]) -> list[Server]:
    servers = [
        Server.objects.create(team=team, name=name, host=f"{name}.example.test", username="deploy")
        for name in names
    ]
    for tag_name, members in tags.items():
        tag = Tag.objects.create(name=tag_name)
        tag.servers.set([s for s in servers if s.name in members])
    return servers


def within_width(locator, width: int) -> bool:
    """On screen from left to right as the page is, without scrolling anything sideways."""
    box = locator.bounding_box()
    return box is not None and box["x"] >= 0 and box["x"] + box["width"] <= width


def test_on_a_phone_the_menu_opens_and_the_server_actions_are_reachable(
    live_app, page, django_user_model, team
):
    from playwright.sync_api import expect

    manager(django_user_model, team)
    long_name = "a-rather-long-server-name-01"
    add_servers(team, [long_name, "db-2"], {"production": [long_name]})
    page.set_viewport_size(PHONE)
    log_in(page, live_app.url + "/login/", "ada", PASSWORD)
    page.goto("/servers/")
    screenshot(page, "forms-phone-servers")
    nav = page.get_by_role("navigation")
    toggle = page.get_by_role("button", name="Menu")
    expect(nav.get_by_role("link", name="Jobs")).to_be_hidden()

    # By keyboard: the menu opens with Enter on its button and closes with Escape.
    toggle.focus()
    page.keyboard.press("Enter")
    expect(toggle).to_have_attribute("aria-expanded", "true")
    screenshot(page, "forms-phone-menu-open")
    for name in ("Dashboard", "Executions", "Jobs", "Servers"):
        link = nav.get_by_role("link", name=name)
        expect(link).to_be_visible()
        assert within_width(link, PHONE["width"]), name
    page.keyboard.press("Escape")
    expect(nav.get_by_role("link", name="Jobs")).to_be_hidden()
    expect(toggle).to_be_focused()

    # Every row's actions are on screen, and the page itself does not scroll sideways.
    rows = page.locator("table tbody tr")
    expect(rows).to_have_count(2)
    for row in rows.all():
        for action in (
            row.get_by_role("button", name="Test"),
            row.get_by_role("link", name="Edit"),
        ):
            expect(action).to_be_visible()
            assert within_width(action, PHONE["width"])
    assert page.evaluate("() => document.documentElement.scrollWidth") <= PHONE["width"]

    toggle.click()
    nav.get_by_role("link", name="Jobs").click()
    expect(page.locator("h1")).to_have_text("Jobs")


def test_adding_a_server_with_a_password_and_a_new_tag(live_app, page, django_user_model, team):
    from playwright.sync_api import expect

    manager(django_user_model, team)
    Tag.objects.create(name="web")
    log_in(page, live_app.url + "/login/", "ada", PASSWORD)
    page.goto("/servers/new/")
    expect(page.locator("#id_team option:checked")).to_have_text(team.name)
    expect(page.locator("#id_new_private_key")).to_be_visible()
    expect(page.locator("#id_new_password")).to_be_hidden()
    expect(page.locator("[name^=clear_]")).to_have_count(0)

    page.fill("#id_name", "web-1")
    page.fill("#id_host", "web-1.example.test")
    page.fill("#id_username", "deploy")
    page.select_option("#id_auth_method", "password")
    expect(page.locator("#id_new_private_key")).to_be_hidden()
    expect(page.locator("#id_new_passphrase")).to_be_hidden()
    page.fill("#id_new_password", "typed-pw-42")
    page.fill("#id_tags", "eu-west")
    known = page.locator("#tag-choices").get_by_role("button", name="web")
    known.focus()
    page.keyboard.press("Space")
    expect(known).to_have_attribute("aria-pressed", "true")
    expect(page.locator("#id_tags")).to_have_value("eu-west, web")
    screenshot(page, "forms-add-server-password")
    page.get_by_role("button", name="Save").click()
    expect(page.locator(".messages")).to_contain_text("Saved web-1")

    server = Server.objects.get(name="web-1")
    assert server.team == team
    assert server.password == "typed-pw-42"
    assert [tag.name for tag in server.tags.all()] == ["eu-west", "web"]
    page.goto(reverse("server-edit", args=[server.pk]))
    expect(page.locator("[name^=clear_]")).to_have_count(1)
    expect(page.get_by_label("Clear the stored password")).to_be_visible()
