"""The live log viewer shows stdout and stderr interleaved as the server sent them."""

from __future__ import annotations

import pytest

from accounts.models import Membership, Role
from accounts.roles import role_group
from servers.tests.test_output_order import ALTERNATING, EXPECTED
from tsubame.tests.browser import log_in, screenshot

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.real_queue,
    pytest.mark.timeout(240),
]

PASSWORD = "pw-ada-lovelace-123!"


def run_and_read(page, job) -> list[str]:
    """Run the job from its page and return the viewer's lines once the run has finished."""
    from playwright.sync_api import expect

    page.goto(f"/jobs/{job.pk}/")
    page.click("#run-default button")
    expect(page.locator("#stream-state")).to_have_text("finished", timeout=30_000)
    text = page.evaluate("() => window.tsubameViewer.bufferText()")
    return [line for line in text.split("\n") if line]


def test_viewer_shows_interleaved_output_in_the_order_it_was_written(
    live_app, page, django_user_model, make_server, make_job, team, prompt_sshd
):
    user = django_user_model.objects.create_user("ada", password=PASSWORD)
    Membership.objects.create(team=team, user=user, role=role_group(Role.OPERATOR))
    # prompt_sshd: a normal sshd running late on a busy machine reorders these lines itself.
    server = make_server(prompt_sshd)
    log_in(page, live_app.url + "/login/", "ada", PASSWORD)

    # 1-out, 2-err, 3-out, ... 200 lines 1 ms apart on alternating streams; one spare run for
    # the rare run that sshd itself reorders (see servers/tests/test_output_order.py).
    job = make_job(ALTERNATING, [server], interpreter="/usr/bin/python3")
    expected = [line for _stream, line in EXPECTED]
    lines = run_and_read(page, job)
    if lines != expected:
        lines = run_and_read(page, job)
    assert lines[:3] == ["1-out", "2-err", "3-out"]
    assert lines == expected
    screenshot(page, "viewer-interleaved")

    # Under a terminal there is one stream, with CR LF line ends: shown line by line too.
    script = (
        "test -t 1 && echo on-a-terminal\nfor i in 1 2 3; do echo $i-out; echo $i-err >&2; done"
    )
    lines = run_and_read(page, make_job(script, [server], use_terminal=True))
    assert lines == ["on-a-terminal", "1-out", "1-err", "2-out", "2-err", "3-out", "3-err"]
