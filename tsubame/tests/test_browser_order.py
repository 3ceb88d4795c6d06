"""The live log viewer shows stdout and stderr interleaved as they were stored: as sent."""

from __future__ import annotations

import re

import pytest

from accounts.models import Membership, Role
from accounts.roles import role_group
from executions.models import Execution
from executions.tests.helpers import stored_lines
from servers.tests.arrivals import stream_switches
from servers.tests.test_output_order import ALTERNATING, EXPECTED
from tsubame.tests.browser import log_in, screenshot

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.real_queue,
    pytest.mark.timeout(240),
]

PASSWORD = "pw-ada-lovelace-123!"


def run_and_read(page, job) -> tuple[list[str], Execution]:
    """Run the job from its page; the viewer's lines once the run has finished, and the run."""
    from playwright.sync_api import expect

    page.goto(f"/jobs/{job.pk}/")
    page.click("#run-default button")
    expect(page.locator("#stream-state")).to_have_text("finished", timeout=30_000)
    text = page.evaluate("() => window.tsubameViewer.bufferText()")
    execution = Execution.objects.get(pk=re.search(r"/executions/(\d+)/", page.url)[1])
    return [line for line in text.split("\n") if line], execution


def test_viewer_shows_interleaved_output_in_the_order_it_was_stored(
    live_app, page, django_user_model, make_server, make_job, team, prompt_sshd
):
    user = django_user_model.objects.create_user("ada", password=PASSWORD)
    Membership.objects.create(team=team, user=user, role=role_group(Role.OPERATOR))
    # prompt_sshd: a normal sshd running late on a busy machine reorders these lines itself.
    server = make_server(prompt_sshd)
    log_in(page, live_app.url + "/login/", "ada", PASSWORD)

    # 1-out, 2-err, 3-out, ... 200 lines 1 ms apart on alternating streams. The viewer shows
    # the stored order, which is the order sshd sent (executions/tests/test_output_order.py);
    # a busy sshd may itself send a few lines out of the order written.
    job = make_job(ALTERNATING, [server], interpreter="/usr/bin/python3")
    lines, execution = run_and_read(page, job)
    assert sorted(lines) == sorted(line for _stream, line in EXPECTED)
    assert stream_switches(stored_lines(execution)) >= 10
    assert lines == [line for _stream, line in stored_lines(execution)]
    screenshot(page, "viewer-interleaved")

    # Under a terminal there is one stream, with CR LF line ends: shown line by line too.
    script = (
        "test -t 1 && echo on-a-terminal\nfor i in 1 2 3; do echo $i-out; echo $i-err >&2; done"
    )
    lines, _execution = run_and_read(page, make_job(script, [server], use_terminal=True))
    assert lines == ["on-a-terminal", "1-out", "1-err", "2-out", "2-err", "3-out", "3-err"]
