"""The forms and the layout in a real browser: the target picker, the server form, a phone."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from accounts.models import Membership, Role, Team
from accounts.roles import role_group
from executions.models import Execution
from jobs.models import Job
from servers.models import Server, Tag
from tsubame.tests.browser import log_in, screenshot

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.real_queue,
    pytest.mark.timeout(240),
]

PASSWORD = "pw-ada-lovelace-123!"
PHONE = {"width": 390, "height": 844}


@pytest.fixture(autouse=True)
def no_csp_violations(page):
    """Every test here also proves its pages work under the CSP: no inline script or style."""
    violations: list[str] = []
    page.on("console", lambda m: violations.append(m.text) if "Content Security" in m.text else 0)
    yield
    assert violations == []


def manager(django_user_model, team: Team):
    user = django_user_model.objects.create_user("ada", password=PASSWORD)
    Membership.objects.create(team=team, user=user, role=role_group(Role.MANAGER))
    return user


def add_servers(team: Team, names: list[str], tags: dict[str, list[str]]) -> list[Server]:
    servers = [
        # Port 9 on loopback: a run fails at once, and nothing leaves the machine.
        Server.objects.create(team=team, name=name, host="127.0.0.1", port=9, username="deploy")
        for name in names
    ]
    for tag_name, members in tags.items():
        tag = Tag.objects.create(name=tag_name)
        tag.servers.set([s for s in servers if s.name in members])
    return servers


def checked(page, scope: str) -> list[str]:
    """The names of the servers ticked in the picker inside `scope`."""
    return page.eval_on_selector_all(
        f"{scope} .picker-list li:has(input:checked) strong",
        "nodes => nodes.map(n => n.textContent)",
    )


def test_job_targets_are_picked_by_filter_tag_and_click_and_the_run_dialog_picks_the_same_way(
    live_app, page, django_user_model, team, other_team
):
    from playwright.sync_api import expect

    user = manager(django_user_model, team)
    Membership.objects.create(team=other_team, user=user, role=role_group(Role.MANAGER))
    names = ["web-1", "web-2", "web-3", "db-1", "db-2", "cache-1"]
    add_servers(team, names, {"web": ["web-1", "web-2", "web-3"], "db": ["db-1", "db-2"]})
    add_servers(other_team, ["theirs-1"], {})
    log_in(page, live_app.url + "/login/", "ada", PASSWORD)
    page.goto("/jobs/new/")
    page.fill("#id_name", "deploy")
    page.evaluate("""() => document.querySelector(".CodeMirror").CodeMirror.setValue("true")""")
    picker = page.locator("#job-form .target-picker")
    expect(picker.locator(".picker-count")).to_have_text("0 of 7 selected")
    picker.get_by_role("checkbox", name="theirs-1").check()
    # Once the team is chosen only its servers are offered, and another team's are let go.
    page.select_option("#id_team", label=team.name)
    expect(picker.locator(".picker-count")).to_have_text("0 of 6 selected")
    expect(picker.get_by_role("checkbox", name="theirs-1")).to_be_hidden()

    # A click ticks one more server, it never replaces the others.
    picker.get_by_role("checkbox", name="cache-1").click()
    picker.get_by_role("button", name="web").click()
    assert checked(page, "#job-form") == ["cache-1", "web-1", "web-2", "web-3"]

    # The filter narrows the list; Enter in it does not submit; "all shown" ticks what is shown.
    filter_box = picker.get_by_role("searchbox", name="Filter servers")
    filter_box.fill("db-")
    filter_box.press("Enter")
    expect(picker.locator(".picker-list li:visible")).to_have_count(2)
    picker.get_by_role("button", name="Select all shown").click()
    expect(picker.locator(".picker-count")).to_have_text("6 of 6 selected")
    filter_box.fill("nothing-like-this")
    expect(picker.get_by_text("No server matches the filter.")).to_be_visible()
    filter_box.fill("")

    # By keyboard: Space on a focused checkbox unticks it.
    picker.get_by_role("checkbox", name="web-2").focus()
    page.keyboard.press("Space")
    expect(picker.locator(".picker-count")).to_have_text("5 of 6 selected")
    screenshot(page, "forms-job-targets")
    page.get_by_role("button", name="Save").click()
    expect(page.locator("h1")).to_have_text("deploy")
    job = Job.objects.get(name="deploy")
    assert sorted(s.name for s in job.servers.all()) == [
        "cache-1",
        "db-1",
        "db-2",
        "web-1",
        "web-3",
    ]

    # The run dialog: the job's targets preselected, the same picker to change them.
    page.locator("#run-dialog summary").click()
    dialog = page.locator("#run-dialog .target-picker")
    expect(dialog.locator(".picker-count")).to_have_text("5 of 6 selected")
    dialog.get_by_role("button", name="Select none").click()
    dialog.get_by_role("button", name="db").click()
    screenshot(page, "forms-run-dialog")
    page.get_by_role("button", name="Run on selected").click()
    expect(page).to_have_url(re.compile(r"/executions/\d+/"))
    execution = Execution.objects.get()
    assert sorted(run.server_name for run in execution.host_runs.all()) == ["db-1", "db-2"]


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

    # The target picker fits too.
    toggle.click()
    nav.get_by_role("link", name="Jobs").click()
    expect(page.locator("h1")).to_have_text("Jobs")
    page.goto("/jobs/new/")
    picker = page.locator(".target-picker")
    for control in (picker.get_by_role("checkbox", name="db-2"), picker.get_by_text("Select none")):
        control.scroll_into_view_if_needed()
        assert within_width(control, PHONE["width"])
    assert page.evaluate("() => document.documentElement.scrollWidth") <= PHONE["width"]
    screenshot(page, "forms-phone-job-form")


def test_adding_a_server_with_a_password_and_a_new_tag(live_app, page, django_user_model, team):
    from playwright.sync_api import expect

    manager(django_user_model, team)
    # Offered because a server of the team uses it (tags of other teams' servers are not).
    Server.objects.create(
        team=team, name="web-0", host="web-0.example.test", username="u"
    ).tags.add(Tag.objects.create(name="web"))
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
