"""The browser harness works end to end: login, pages, static files and live output."""

from __future__ import annotations

import pytest

from executions import services
from executions.models import Status, Trigger
from tsubame.tests.browser import LOGIN_PATH, log_in, screenshot

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.real_queue,
    pytest.mark.timeout(120),
]

PASSWORD = "pw-ada-lovelace-123!"
# A pause, so that part of the output arrives while the page listens; a carriage return and
# an ANSI colour, which the log view has to pass through untouched.
SCRIPT = r"""echo first line
sleep 0.5
printf 'progress 50%%\rprogress 100%%\n'
printf '\033[32mgreen\033[0m\n'
"""
EXPECTED_OUTPUT = "first line\nprogress 50%\rprogress 100%\n\x1b[32mgreen\x1b[0m\n"

# Opens the execution's WebSocket from the page and resolves with every message up to `end`.
LISTEN = """async (path) => new Promise((resolve, reject) => {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const socket = new WebSocket(`${scheme}://${location.host}${path}`);
  const messages = [];
  const timer = setTimeout(() => reject(new Error("no end: " + JSON.stringify(messages))), 60000);
  socket.onmessage = (event) => {
    const message = JSON.parse(event.data);
    messages.push(message);
    if (message.type === "end") {
      clearTimeout(timer);
      socket.close();
      resolve(messages);
    }
  };
  socket.onclose = (event) =>
    reject(new Error(`closed (${event.code}) before end: ` + JSON.stringify(messages)));
})"""


def test_browser_logs_in_and_follows_an_execution_live(
    live_app, page, django_user_model, make_server, make_job
):
    from playwright.sync_api import expect  # here: without Playwright the fixtures skip

    user = django_user_model.objects.create_superuser("ada", password=PASSWORD)
    log_in(page, live_app.url + LOGIN_PATH, "ada", PASSWORD)

    page.goto("/admin/")
    expect(page.locator("#user-tools")).to_contain_text("ada")
    screenshot(page, "harness-admin-index")

    job = make_job(SCRIPT, [make_server()])
    execution = services.start_execution(job, trigger=Trigger.UI, triggered_by=user)
    messages = page.evaluate(LISTEN, f"/ws/executions/{execution.pk}/")

    assert messages[-1] == {"type": "end"}
    chunks = [chunk for m in messages if m["type"] == "output" for chunk in m["chunks"]]
    assert "".join(c["text"] for c in chunks if c["stream"] == "stdout") == EXPECTED_OUTPUT
    statuses = [m["execution"]["status"] for m in messages if m["type"] == "status"]
    assert statuses[-1] == Status.SUCCEEDED, live_app.logs()

    response = page.goto("/static/admin/css/base.css")
    assert response is not None
    assert response.status == 200
    assert response.headers["content-type"].startswith("text/css")
