"""What a new user ran into, in a real browser: the API docs under the Content-Security-Policy,
a script too large for the form, a server's health after a new host key, and searching
executions with any status."""

from __future__ import annotations

import paramiko
import pytest

from accounts.models import Membership, Role, Team
from accounts.roles import role_group
from executions.models import Execution
from servers import services, ssh
from servers.models import Server
from tsubame.tests.browser import log_in, screenshot

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.real_queue,
    pytest.mark.timeout(240),
]

PASSWORD = "pw-katherine-johnson-123!"


def record_csp_violations(page) -> list[str]:
    """Chromium reports each blocked script, style or image on the console."""
    violations: list[str] = []
    page.on("console", lambda m: violations.append(m.text) if "Content Security" in m.text else 0)
    return violations


def log_in_manager(page, live_app, django_user_model, team: Team) -> None:
    user = django_user_model.objects.create_user("katherine", password=PASSWORD)
    Membership.objects.create(team=team, user=user, role=role_group(Role.MANAGER))
    log_in(page, live_app.url + "/login/", "katherine", PASSWORD)


def test_the_api_docs_show_their_operations_under_the_strict_policy(live_app, page) -> None:
    from playwright.sync_api import expect

    violations = record_csp_violations(page)
    response = page.goto("/api/v1/docs/")
    assert response is not None
    assert "script-src 'self';" in response.headers["content-security-policy"]
    operation = page.locator('.opblock-summary-path[data-path="/api/v1/executions/"]')
    expect(operation.first).to_be_visible()
    expect(page.locator(".opblock-tag").first).to_be_visible()
    screenshot(page, "newuser-api-docs")
    assert violations == []


def test_a_script_over_the_limit_is_refused_in_the_form_which_keeps_it(
    live_app, page, django_user_model, team
) -> None:
    from playwright.sync_api import expect

    log_in_manager(page, live_app, django_user_model, team)
    # 3 MB: past Django's default form limit (2.5 MB), which answered a bare 400 page.
    lines = 31_458
    page.goto("/jobs/new/")
    page.select_option("#id_team", label=team.name)
    page.fill("#id_name", "big")
    page.evaluate(
        """(lines) => document.querySelector(".CodeMirror").CodeMirror.setValue(
            ("# " + "x".repeat(97) + "\\n").repeat(lines))""",
        lines,
    )
    page.click("#job-form button[type=submit]")
    expect(page.locator(".errorlist")).to_contain_text(
        f"This script is {lines * 100:,} bytes; a job's script can be at most 1,048,576 bytes."
    )
    expect(page.locator("#id_name")).to_have_value("big")
    kept = page.evaluate('() => document.querySelector(".CodeMirror").CodeMirror.getValue()')
    assert kept.replace("\r\n", "\n") == ("# " + "x" * 97 + "\n") * lines
    screenshot(page, "newuser-script-too-large")


def test_a_trusted_new_key_and_a_run_replace_a_host_key_failure_and_any_status_finds_it(
    live_app, page, django_user_model, team, sshd, make_server, make_job
) -> None:
    from playwright.sync_api import expect

    log_in_manager(page, live_app, django_user_model, team)
    server = make_server(name="web-1", host_key="")
    # The key it had before it was re-installed; a real test then finds the key changed.
    server.trust_host_key(ssh.HostKey.from_pkey(paramiko.ECDSAKey.generate()), None)
    assert services.check_connection(server).status == "host_key_changed"

    page.goto("/servers/")
    row = page.locator("tr", has_text="web-1")
    expect(row.locator(".badge")).to_have_text("host_key_changed")
    row.get_by_role("link", name="Host key").click()
    page.get_by_role("button", name="Trust this key").click()
    expect(page.locator(".messages")).to_contain_text(f"trusted {sshd.host_key.fingerprint}")

    job = make_job("echo health-needle-7", [server])
    page.goto(f"/jobs/{job.pk}/")
    page.click("#run-default button")
    expect(page.locator("#execution-status")).to_have_text("Succeeded", timeout=30_000)

    page.goto("/servers/")
    expect(page.locator("tr", has_text="web-1").locator(".badge")).to_have_text("ok")
    page.goto("/")
    expect(page.locator("body")).not_to_contain_text("host_key_changed")
    assert Server.objects.get(pk=server.pk).last_check_status == "ok"

    # Status "any" (the select's empty choice) and a word of the output.
    page.goto("/executions/")
    expect(page.locator("#execution-filters select[name=status]")).to_have_value("")
    page.fill("input[name=q]", "health-needle-7")
    page.click("#execution-filters button")
    expect(page.locator("table tbody tr")).to_have_count(1)
    expect(page.locator("table tbody tr").first).to_contain_text(f"#{Execution.objects.get().pk}")
    expect(page.locator(".errorlist")).to_have_count(0)
    screenshot(page, "newuser-executions-any-status")
