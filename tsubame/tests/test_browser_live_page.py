"""The execution page while a run is live and once it ends: what a person sees without reloading."""

from __future__ import annotations

import re

import pytest

from executions.models import HostRun, LogChunk
from executions.tests.helpers import start
from executions.tests.live_client import go
from tsubame.tests.browser import SCREENSHOT_DIR
from tsubame.tests.test_browser_combined_view import open_as_operator, terminal_lines

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.real_queue,
    pytest.mark.timeout(300),
]

# A progress bar that waits at 60 % for the test, with nothing after it on the screen.
PROGRESS_SCRIPT = r"""echo starting
printf 'progress 10%%'; sleep 0.2; printf '\rprogress 60%%'
while [ ! -e "{dir}/go1" ]; do sleep 0.02; done
printf '\rprogress 100%%\n'
"""
# The same format as the server's `exact` and `duration` filters (accounts/templatetags/times.py).
EXACT = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \S+$")
DURATION = re.compile(r"^(\d+\.\d s|\d+ min \d\d s|\d+ h \d\d min)$")


def viewport_screenshot(page, name: str) -> None:
    """What the window shows, not the whole page: the point here is what is seen unscrolled."""
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOT_DIR / f"{name}.png"))


def fact(page, name: str) -> str:
    return page.locator(f'#execution-facts div:has(> dt:text-is("{name}")) dd').inner_text()


def test_live_rows_in_view_facts_updated_and_a_failed_connection_named(
    live_app, page, django_user_model, make_server, make_job, team, shared_dir
):
    from playwright.sync_api import expect

    page.set_viewport_size({"width": 1366, "height": 900})
    servers = [make_server(name="web-1"), make_server(name="web-2")]
    broken = make_server(name="web-3", port=1)  # nothing listens there
    job = make_job(PROGRESS_SCRIPT.format(dir=shared_dir), [*servers, broken])
    open_as_operator(page, live_app, django_user_model, team)
    execution = start(job)
    page.goto(f"/executions/{execution.pk}/")
    try:
        # 1. The bars waiting at 60 % are on screen without scrolling.
        row = page.locator('#live-lines .live-line[data-host="web-1"]')
        expect(row).to_have_text("web-1progress 60%", timeout=30_000)
        expect(page.locator('#live-lines .live-line[data-host="web-2"]')).to_be_visible()
        box = row.bounding_box()
        height = page.evaluate("() => window.innerHeight")
        assert page.evaluate("() => window.scrollY") == 0
        viewport_screenshot(page, "live-page-progress")
        assert box is not None
        assert box["y"] >= 0, box
        assert box["y"] + box["height"] <= height, box

        # 3. The host that could not connect says why, in the combined view.
        page.wait_for_function(
            "() => window.tsubameViewer.bufferText().includes('web-3 ! ')", timeout=30_000
        )
        error = HostRun.objects.get(execution=execution, server_name="web-3").error
        assert error
        notes = [line for line in terminal_lines(page) if line.startswith("web-3")]
        assert len(notes) == 1, notes
        assert notes[0].startswith(f"web-3 ! {error[:40]}"), notes
        assert fact(page, "Finished") == "not yet"
    finally:
        go(shared_dir, 1)

    # 2. Once the run ends, the facts and the host durations read as the server writes them.
    expect(page.locator("#stream-state")).to_have_text("finished", timeout=30_000)
    expect(page.locator("#execution-status")).to_have_text("Failed")
    expect(page.locator("#execution-facts")).not_to_contain_text("not yet")
    assert EXACT.match(fact(page, "Started")), fact(page, "Started")
    assert EXACT.match(fact(page, "Finished")), fact(page, "Finished")
    assert DURATION.match(fact(page, "Duration")), fact(page, "Duration")
    durations = page.locator('#host-table [data-field="duration"]').all_inner_texts()
    assert len(durations) == 3
    assert all(DURATION.match(text) for text in durations), durations
    viewport_screenshot(page, "live-page-finished")
    facts, table = page.locator("#execution-facts").inner_text(), durations

    # The failed host's own view shows the reason too; its stored log stays empty.
    page.get_by_role("button", name="web-3", exact=True).click()
    page.wait_for_function("() => window.tsubameViewer.bufferText().includes('!')")
    assert terminal_lines(page)[0].startswith("! ")
    assert not LogChunk.objects.filter(host_run__server_name="web-3").exists()

    # A reload shows the same, rendered by the server.
    page.reload()
    expect(page.locator("#stream-state")).to_have_text("finished")
    assert page.locator("#execution-facts").inner_text() == facts
    assert page.locator('#host-table [data-field="duration"]').all_inner_texts() == table
    page.wait_for_function("() => window.tsubameViewer.bufferText().includes('web-3 ! ')")
