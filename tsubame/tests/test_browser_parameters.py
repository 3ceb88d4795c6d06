"""Parameters in a real browser: the job editor's rows, the run dialog, secret variables."""

from __future__ import annotations

import re

import pytest

from accounts.models import Membership, Role, Team
from accounts.roles import role_group
from executions.models import Execution
from jobs.models import Job, SecretVariable
from jobs.parameters import clean_definitions
from servers.models import Server, Tag
from tsubame.tests.browser import log_in, screenshot

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.real_queue,
    pytest.mark.timeout(240),
]

PASSWORD = "pw-ada-lovelace-123!"
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 720}


@pytest.fixture(autouse=True)
def no_csp_violations(page):
    """Every page here works under the CSP: no inline script or style."""
    violations: list[str] = []
    page.on("console", lambda m: violations.append(m.text) if "Content Security" in m.text else 0)
    yield
    assert violations == []


def member(django_user_model, team: Team, role: Role, username: str = "ada"):
    user = django_user_model.objects.create_user(username, password=PASSWORD)
    Membership.objects.create(team=team, user=user, role=role_group(role))
    return user


def add_server(team: Team, name: str, tag: str, **fields) -> Server:
    # Port 9 on loopback: a run fails at once, and nothing leaves the machine.
    server = Server.objects.create(
        team=team, name=name, host="127.0.0.1", port=9, username="deploy", **fields
    )
    server.tags.set([Tag.named(tag)])
    return server


def test_the_editor_adds_reorders_and_removes_parameters(live_app, page, django_user_model, team):
    from playwright.sync_api import expect

    member(django_user_model, team, Role.MANAGER)
    log_in(page, live_app.url + "/login/", "ada", PASSWORD)
    page.goto("/jobs/new/")
    page.fill("#id_name", "deploy")
    page.evaluate("""() => document.querySelector(".CodeMirror").CodeMirror.setValue("true")""")
    # The rows replace the JSON, which stays the form's field (hidden).
    expect(page.locator("#id_parameters")).to_be_hidden()
    expect(page.get_by_text("No parameters: a run asks for nothing.")).to_be_visible()
    rows = page.locator(".parameter-row")
    add = page.get_by_role("button", name="Add parameter")
    for name in ("FIRST", "PATH", "THIRD"):
        add.click()
        expect(rows.last.locator('[data-key="name"]')).to_be_focused()
        page.keyboard.type(name)

    # Each type shows only the inputs it takes.
    second, third = rows.nth(1), rows.nth(2)
    second.locator('[data-key="type"]').select_option("integer")
    for key, shown in (("min", True), ("max", True), ("pattern", False), ("choices", False)):
        expect(second.locator(f'[data-field="{key}"]')).to_be_visible(visible=shown)
    second.locator('[data-key="default"]').fill("5")
    second.locator('[data-key="min"]').fill("1")
    third.locator('[data-key="type"]').select_option("choice")
    third.locator('[data-key="choices"]').fill("dev\nprod")
    third.locator('[data-key="default"]').select_option("prod")
    third.locator('[data-key="label"]').fill("Environment")
    third.locator('[data-key="required"]').check()
    expect(third.locator('[data-field="min"]')).to_be_hidden()

    # The server judges the definitions; its message is shown at the parameter's row.
    page.get_by_role("button", name="Save").click()
    expect(page.locator("h1")).to_have_text("New job")
    expect(rows.nth(1).locator(".errorlist")).to_contain_text(
        "PATH is a name the shell or the system relies on"
    )
    expect(rows).to_have_count(3)  # the rows come back as they were sent
    expect(rows.nth(2).locator('[data-key="default"]')).to_have_value("prod")
    rows.nth(1).locator('[data-key="name"]').fill("REPLICAS")
    screenshot(page, "parameters-editor")
    # On a phone the rows fit the screen: nothing scrolls sideways.
    page.set_viewport_size(PHONE)
    assert page.evaluate("() => document.documentElement.scrollWidth") <= PHONE["width"]
    screenshot(page, "parameters-editor-phone")
    page.set_viewport_size(DESKTOP)

    # Reordered by keyboard, one removed: saved in the order shown.
    page.get_by_role("button", name="Move THIRD up").focus()
    page.keyboard.press("Enter")
    expect(rows.nth(1).locator('[data-key="name"]')).to_have_value("THIRD")
    expect(page.get_by_role("button", name="Move THIRD up")).to_be_focused()
    page.get_by_role("button", name="Remove FIRST").click()
    expect(rows).to_have_count(2)
    expect(page.get_by_role("button", name="Move THIRD up")).to_be_disabled()
    page.get_by_role("button", name="Save").click()
    expect(page.locator("h1")).to_have_text("deploy")

    job = Job.objects.get(name="deploy")
    assert job.parameters == clean_definitions(
        [
            {
                "name": "THIRD",
                "label": "Environment",
                "type": "choice",
                "required": True,
                "choices": ["dev", "prod"],
                "default": "prod",
            },
            {"name": "REPLICAS", "type": "integer", "default": 5, "min": 1},
        ]
    )


DEFINITIONS = [
    {"name": "VERSION", "label": "Version", "required": True, "pattern": r"[0-9.]+"},
    {"name": "NOTES", "type": "text", "help": "Why this deploy, for the log."},
    {"name": "REPLICAS", "type": "integer", "default": 3, "min": 1, "max": 9},
    {"name": "DRY_RUN", "label": "Dry run", "type": "boolean", "default": True},
    {"name": "ENVIRONMENT", "type": "choice", "choices": ["dev", "prod"], "default": "dev"},
    {"name": "MODULES", "type": "multichoice", "choices": ["api", "web", "cron"]},
    {"name": "TOKEN", "label": "Deploy token", "type": "secret", "required": True},
]


def test_the_run_dialog_asks_for_values_refuses_a_bad_one_and_runs_with_good_ones(
    live_app, page, django_user_model, team
):
    from playwright.sync_api import expect

    member(django_user_model, team, Role.OPERATOR, "otto")
    add_server(team, "web-1", "web", last_check_status="ok")
    add_server(
        team,
        "db-1",
        "db",
        last_check_status="unreachable",
        last_check_message="connection refused",
    )
    job = Job.objects.create(
        team=team, name="deploy", script="true", parameters=clean_definitions(DEFINITIONS)
    )
    job.target_tags.set([Tag.named("web")])
    log_in(page, live_app.url + "/login/", "otto", PASSWORD)

    # Run asks first (a required value, a secret): it opens the dialog on the job's page.
    page.goto("/jobs/")
    page.get_by_role("link", name="Run…").click()
    expect(page).to_have_url(re.compile(rf"/jobs/{job.pk}/\?run=1#run-dialog$"))
    dialog = page.locator("#run-dialog")
    expect(dialog).to_have_attribute("open", "")
    expect(dialog.get_by_label("Version")).to_have_value("")
    expect(dialog.get_by_label("Version")).to_have_attribute("type", "text")
    expect(page.locator("#id_NOTES")).to_have_js_property("tagName", "TEXTAREA")
    expect(page.locator("#id_REPLICAS")).to_have_attribute("type", "number")
    expect(page.locator("#id_REPLICAS")).to_have_value("3")
    expect(dialog.get_by_label("Dry run")).to_be_checked()
    expect(page.locator("#id_ENVIRONMENT")).to_have_value("dev")
    expect(page.locator("input[name=MODULES]")).to_have_count(3)
    expect(dialog.get_by_label("Deploy token")).to_have_attribute("type", "password")
    expect(page.locator("#parameter-NOTES")).to_contain_text("Why this deploy, for the log.")

    # The job's tag is ticked, and where the ticked tags lead is shown with the servers' health.
    tag_servers = page.locator("#run-tags .tag-servers li")
    expect(tag_servers.filter(visible=True)).to_have_count(1)
    expect(tag_servers.filter(visible=True)).to_contain_text("web-1")
    page.locator("#run-tags").get_by_label("db").check()
    expect(tag_servers.filter(visible=True)).to_have_count(2)
    expect(tag_servers.filter(has_text="db-1")).to_contain_text("unreachable")
    expect(tag_servers.filter(has_text="db-1")).to_contain_text("connection refused")
    page.locator("#run-tags").get_by_label("db").uncheck()
    screenshot(page, "parameters-run-dialog")

    # A bad value: the page again (400), the message at the value, the others kept.
    dialog.get_by_label("Version").fill("one.two")
    page.fill("#id_NOTES", "first try")
    dialog.get_by_label("Deploy token").fill("tok-first-try")
    dialog.get_by_role("button", name="Run on selected").click()
    error = page.locator("#parameter-VERSION .errorlist")
    expect(error).to_have_text("The value must match the pattern [0-9.]+.")
    expect(page.locator("#id_NOTES")).to_have_value("first try")
    expect(dialog.get_by_label("Deploy token")).to_have_value("")
    assert "tok-first-try" not in page.content()
    assert not Execution.objects.exists()
    screenshot(page, "parameters-run-error")

    dialog.get_by_label("Version").fill("1.2")
    dialog.get_by_label("Deploy token").fill("tok-second-try")
    page.locator("input[name=MODULES][value=web]").check()
    dialog.get_by_role("button", name="Run on selected").click()
    expect(page).to_have_url(re.compile(r"/executions/\d+/$"))
    shown = page.locator("#execution-parameters")
    expect(shown.locator("div", has=page.locator("dt", has_text="Version"))).to_contain_text("1.2")
    expect(shown.locator("div", has=page.locator("dt", has_text="Deploy token"))).to_contain_text(
        "(secret)"
    )
    expect(shown).to_contain_text("web")
    assert "tok-second-try" not in page.content()
    screenshot(page, "parameters-execution")
    execution = Execution.objects.get()
    assert execution.parameters["TOKEN"] is None
    assert execution.parameters["MODULES"] == ["web"]
    assert [run.server_name for run in execution.host_runs.all()] == ["web-1"]


def test_a_secret_variable_made_in_the_ui_is_never_shown_again(
    live_app, page, django_user_model, team
):
    from playwright.sync_api import expect

    value = "never-shown-value-4711"
    member(django_user_model, team, Role.MANAGER)
    log_in(page, live_app.url + "/login/", "ada", PASSWORD)
    page.get_by_role("navigation").get_by_role("link", name="Secrets").click()
    page.get_by_role("link", name="New secret variable").click()
    page.fill("#id_name", "API_KEY")
    page.fill("#id_new_value", value)
    page.fill("#id_description", "For the payment API.")
    page.get_by_role("button", name="Save").click()
    expect(page.locator(".messages")).to_contain_text("Saved API_KEY.")
    expect(page.locator("#secret-variables")).to_contain_text("For the payment API.")
    assert SecretVariable.objects.get(name="API_KEY").value == value
    assert value not in page.content()
    screenshot(page, "parameters-secret-variables")

    page.get_by_role("link", name="Edit").click()
    expect(page.locator("#id_new_value")).to_have_value("")
    assert value not in page.content()
    page.goto("/jobs/new/")
    expect(page.locator("#field-secret_variables")).to_contain_text("API_KEY")
    assert value not in page.content()
