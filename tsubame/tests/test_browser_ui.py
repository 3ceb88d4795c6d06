"""The team UI in a real browser, against daphne, a real worker and a real sshd."""

from __future__ import annotations

import random
import re
import subprocess

import pytest

from accounts.models import Membership, Role, Team
from accounts.roles import role_group
from executions.models import Execution, Status
from executions.tests.helpers import wait_until
from jobs.models import Job
from servers.models import Server
from tsubame.tests.browser import log_in, screenshot

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.real_queue,
    pytest.mark.timeout(240),
]

PASSWORD = "pw-grace-hopper-123!"


def terminal_text(page) -> str:
    return page.evaluate("() => window.tsubameViewer.bufferText()")


def wait_for_terminal(page, text: str) -> None:
    page.wait_for_function(
        "(text) => window.tsubameViewer && window.tsubameViewer.bufferText().includes(text)",
        arg=text,
    )


def test_manager_adds_a_server_trusts_it_runs_a_job_and_cancels_another(
    live_app, page, django_user_model, sshd
):
    from playwright.sync_api import expect

    team = Team.objects.create(name="ops")
    user = django_user_model.objects.create_user("grace", password=PASSWORD)
    Membership.objects.create(team=team, user=user, role=role_group(Role.MANAGER))
    log_in(page, live_app.url + "/login/", "grace", PASSWORD)
    expect(page.locator(".usermenu summary")).to_contain_text("grace")
    screenshot(page, "ui-dashboard-empty")

    # Add a server, pasting its key.
    page.goto("/servers/new/")
    page.select_option("#id_team", label="ops")
    page.fill("#id_name", "web-1")
    page.fill("#id_host", sshd.host)
    page.fill("#id_port", str(sshd.port))
    page.fill("#id_username", sshd.username)
    page.fill("#id_new_private_key", sshd.client_keys.private_key)
    page.click("button[type=submit]")
    expect(page.locator(".messages")).to_contain_text("Saved web-1")
    server = Server.objects.get(name="web-1")
    assert server.private_key == sshd.client_keys.private_key

    # Trust its host key after seeing the fingerprint.
    page.get_by_role("link", name="Host key").click()
    expect(page.locator("#offered-fingerprint")).to_have_text(sshd.host_key.fingerprint)
    screenshot(page, "ui-trust-host-key")
    page.get_by_role("button", name="Trust this key").click()
    expect(page.locator(".messages")).to_contain_text(f"trusted {sshd.host_key.fingerprint}")
    page.get_by_role("button", name="Test").click()
    expect(page.locator(".messages")).to_contain_text("web-1: ok")
    screenshot(page, "ui-servers")

    # Create a job in the code editor.
    page.goto("/jobs/new/")
    page.select_option("#id_team", label="ops")
    page.fill("#id_name", "hello")
    page.evaluate(
        """() => document.querySelector(".CodeMirror").CodeMirror.setValue(
            "echo first line\\nsleep 1\\nprintf '\\\\033[32mcolour\\\\033[0m\\\\n'\\n"
            + "echo oops >&2\\necho needle-in-output-42")"""
    )
    page.get_by_role("checkbox", name=server.name).check()
    screenshot(page, "ui-job-editor")
    page.click("button[type=submit]")
    expect(page.locator("h1")).to_have_text("hello")

    # Run it and watch the output arrive.
    page.click("#run-default button")
    expect(page.locator("#stream-state")).to_have_text("finished", timeout=30_000)
    text = terminal_text(page)
    assert "first line" in text
    assert "colour" in text
    assert "[32m" not in text  # the colour escape was rendered, not printed
    assert "oops" in text
    expect(page.locator("#execution-status")).to_have_text("Succeeded")
    expect(page.locator("#progress-text")).to_have_text("1/1 hosts done")
    screenshot(page, "ui-execution-finished")
    finished = Execution.objects.get(job__name="hello")
    assert finished.status == Status.SUCCEEDED

    # A long one, cancelled from its page: the remote processes go away.
    tag = f"{random.randint(5000, 9999)}.{random.randint(10**5, 10**6)}"
    long_job = Job.objects.create(
        team=team, name="long", script=f"echo started\nsleep {tag}\n", timeout_seconds=None
    )
    long_job.servers.set([server])
    page.goto(f"/jobs/{long_job.pk}/")
    page.click("#run-default button")
    wait_for_terminal(page, "started")
    assert remote_sleeps(tag)
    page.click("#cancel-form button")
    expect(page.locator("#execution-status")).to_have_text("Cancelled", timeout=15_000)
    wait_until(lambda: not remote_sleeps(tag), 5, "the remote sleep to be killed")
    screenshot(page, "ui-execution-cancelled")

    # Find the first execution by a word in its output.
    page.goto("/executions/")
    page.fill("input[name=q]", "needle-in-output-42")
    page.click("#execution-filters button")
    rows = page.locator("table tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text(f"#{finished.pk}")
    screenshot(page, "ui-executions-search")

    page.goto("/")
    expect(page.locator("#running")).to_contain_text("Nothing is running")
    screenshot(page, "ui-dashboard")


def remote_sleeps(tag: str) -> list[str]:
    found = subprocess.run(["pgrep", "-af", f"sleep {tag}"], capture_output=True, text=True)
    return [line for line in found.stdout.splitlines() if "pgrep" not in line]


def test_viewer_sees_the_job_but_no_run_button_and_cannot_run_it(
    live_app, page, django_user_model, make_server, make_job, team
):
    from playwright.sync_api import expect

    viewer = django_user_model.objects.create_user("vera", password=PASSWORD)
    Membership.objects.create(team=team, user=viewer, role=role_group(Role.VIEWER))
    job = make_job("echo hi", [make_server()])
    log_in(page, live_app.url + "/login/", "vera", PASSWORD)

    page.goto(f"/jobs/{job.pk}/")
    expect(page.locator("h1")).to_have_text(job.name)
    expect(page.locator("#run-default")).to_have_count(0)
    expect(page.locator("#run-dialog")).to_have_count(0)
    screenshot(page, "ui-job-as-viewer")

    # Posting the run form anyway is refused, and nothing runs.
    status = page.evaluate(
        """async (url) => {
            const token = document.cookie.match(/csrftoken=([^;]+)/)[1];
            const response = await fetch(url, {method: "POST", headers: {"X-CSRFToken": token},
                                              body: new URLSearchParams({servers: "1"})});
            return response.status;
        }""",
        f"/jobs/{job.pk}/run/",
    )
    assert status == 403
    assert not Execution.objects.exists()


VIEWER_SCRIPT = r"""for i in $(seq 1 40); do echo "line $i of $(hostname)"; sleep 0.05; done
printf 'progress 10%%\rprogress 60%%\rprogress 100%%\n'
echo to-stderr >&2
"""


def test_log_viewer_switches_hosts_renders_progress_and_resumes_without_gaps(
    live_app, page, django_user_model, make_server, make_job, team
):
    from playwright.sync_api import expect

    user = django_user_model.objects.create_user("lin", password=PASSWORD)
    Membership.objects.create(team=team, user=user, role=role_group(Role.OPERATOR))
    job = make_job(VIEWER_SCRIPT, [make_server(name="alpha"), make_server(name="beta")])
    violations: list[str] = []
    page.on("console", lambda m: violations.append(m.text) if "Content Security" in m.text else 0)
    log_in(page, live_app.url + "/login/", "lin", PASSWORD)
    page.goto(f"/jobs/{job.pk}/")
    page.click("#run-default button")

    # Drop the connection while output is still coming: the viewer resumes from its last seq.
    wait_for_terminal(page, "line 5 ")
    page.evaluate("() => window.tsubameViewer.dropConnection()")
    expect(page.locator("#stream-state")).to_have_text("finished", timeout=30_000)
    combined = terminal_text(page)
    for host in ("alpha", "beta"):
        assert f"\n{host:5} | line 40 of " in combined  # each line carries its host
    assert combined.count("to-stderr") == 2

    for host in ("alpha", "beta"):
        page.get_by_role("button", name=host).click()
        expect(page.get_by_role("button", name=host)).to_have_attribute("aria-pressed", "true")
        wait_for_terminal(page, "to-stderr")  # the terminal is redrawn asynchronously
        lines = terminal_text(page).split("\n")
        numbered = [line for line in lines if line.startswith("line ")]
        assert [int(line.split()[1]) for line in numbered] == list(range(1, 41))  # no gap, no dupe
        assert "progress 100%" in lines  # \r rewrote the line as a terminal does
        assert not any("progress 10%" in line for line in lines)
    expect(page.locator("#progress-text")).to_have_text("2/2 hosts done")
    screenshot(page, "ui-execution-two-hosts")

    page.set_viewport_size({"width": 390, "height": 844})
    page.goto("/")
    screenshot(page, "ui-dashboard-phone")
    assert violations == []


def test_log_viewer_stops_and_says_so_when_the_session_ends(
    live_app, page, django_user_model, make_server, make_job, team, shared_dir
):
    from playwright.sync_api import expect

    from executions.tests.live_client import GATED_SCRIPT, go

    user = django_user_model.objects.create_user("lou", password=PASSWORD)
    Membership.objects.create(team=team, user=user, role=role_group(Role.OPERATOR))
    job = make_job(GATED_SCRIPT.format(dir=shared_dir), [make_server(name="alpha")])
    sockets = []
    page.on("websocket", lambda socket: sockets.append(socket))
    log_in(page, live_app.url + "/login/", "lou", PASSWORD)
    page.goto(f"/jobs/{job.pk}/")
    page.click("#run-default button")
    try:
        wait_for_terminal(page, "step1")
        # Log out in another tab of the same browser: the open viewer's session is gone.
        other = page.context.new_page()
        other.goto("/")
        with other.expect_navigation():
            other.evaluate("() => document.querySelector('form[action=\"/logout/\"]').submit()")
        state = page.locator("#stream-state")
        expect(state).to_have_text("You are signed out: sign in again", timeout=20_000)
        assert page.evaluate("() => window.tsubameViewer.refusedWith") == 4401
        expect(state.get_by_role("link", name="sign in again")).to_have_attribute(
            "href", re.compile(r"^/login/\?next=/executions/\d+/$")
        )
        opened = len(sockets)
        page.wait_for_timeout(2000)  # four times the first retry delay: no retry comes
        assert len(sockets) == opened
        expect(state).to_have_text("You are signed out: sign in again")
        screenshot(page, "ui-execution-signed-out")
    finally:
        for step in (1, 2, 3, 4):
            go(shared_dir, step)
