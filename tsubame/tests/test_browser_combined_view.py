"""The log viewer's combined view of several hosts, and its memory with a huge log."""

from __future__ import annotations

import pytest

from accounts.models import Membership, Role
from accounts.roles import role_group
from executions.models import Execution
from executions.tests.helpers import start
from executions.tests.live_client import go
from tsubame.tests.browser import log_in, screenshot

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.real_queue,
    pytest.mark.timeout(300),
]

PASSWORD = "pw-ada-lovelace-456!"

# Each host prints ticks, then a progress bar redrawn with \r that waits at 60 % for the test.
PERIODIC_SCRIPT = r"""for i in $(seq 1 12); do echo "tick $i"; sleep 0.05; done
printf 'progress 10%%'; sleep 0.2; printf '\rprogress 60%%'
while [ ! -e "{dir}/go1" ]; do sleep 0.02; done
printf '\rprogress 100%%\n'
echo to-stderr >&2
"""


def terminal_lines(page) -> list[str]:
    text = page.evaluate("() => window.tsubameViewer.bufferText()")
    return [line.rstrip() for line in text.split("\n") if line.strip()]


def open_as_operator(page, live_app, django_user_model, team) -> None:
    user = django_user_model.objects.create_user("ada", password=PASSWORD)
    Membership.objects.create(team=team, user=user, role=role_group(Role.OPERATOR))
    log_in(page, live_app.url + "/login/", "ada", PASSWORD)


def test_combined_view_prefixes_every_line_and_keeps_progress_bars_in_place(
    live_app, page, django_user_model, make_server, make_job, team, shared_dir
):
    from playwright.sync_api import expect

    names = ["app-10", "app-2", "app-1"]
    servers = [make_server(name=name) for name in names]
    broken = make_server(name="app-3", port=1)  # nothing listens there: this host fails
    job = make_job(PERIODIC_SCRIPT.format(dir=shared_dir), [*servers, broken])
    open_as_operator(page, live_app, django_user_model, team)
    execution = start(job)
    page.goto(f"/executions/{execution.pk}/")
    try:
        # While the bars wait at 60 %, each host's bar is one live row, not scrollback lines.
        live = page.locator("#live-lines .live-line")
        expect(live).to_have_count(3, timeout=30_000)
        for name in names:
            expect(page.locator(f'#live-lines .live-line[data-host="{name}"]')).to_have_text(
                f"{name}progress 60%"
            )
        assert not [line for line in terminal_lines(page) if "progress" in line]
        colours = live.locator(".live-host").evaluate_all(
            "(names) => names.map((n) => n.style.color)"
        )
        assert len(set(colours)) == 3  # a colour of its own for each host
        screenshot(page, "viewer-combined-progress")
    finally:
        go(shared_dir, 1)
    expect(page.locator("#stream-state")).to_have_text("finished", timeout=30_000)
    expect(live).to_have_count(0)

    lines = terminal_lines(page)
    assert not [line for line in lines if "──" in line]  # no header per chunk any more
    width = max(len(name) for name in names)
    for name in names:
        prefix = f"{name.ljust(width)} | "
        ticks = [line for line in lines if line.startswith(prefix + "tick ")]
        assert ticks == [f"{prefix}tick {i}" for i in range(1, 13)]
        # The bar ends as the one line that was last on screen before its newline.
        assert [line for line in lines if line.startswith(prefix + "progress")] == [
            f"{prefix}progress 100%"
        ]
        assert f"{name.ljust(width)} ! to-stderr" in lines  # stderr is marked
    hosts = [line.split()[0] for line in lines]
    assert set(hosts) <= {*names, "app-3"}, lines  # every line carries its host
    assert len({hosts[i] for i in range(12)}) > 1, lines  # ...and the hosts interleave

    # Host rows sort naturally, failed first: in the table and in the host buttons.
    expected = ["app-3", "app-1", "app-2", "app-10"]
    rows = page.locator("#host-table tbody tr td:first-child")
    assert [text.split()[0] for text in rows.all_inner_texts()] == expected
    buttons = page.locator("#host-buttons button")
    assert buttons.all_inner_texts() == ["All hosts", *expected]
    screenshot(page, "viewer-combined-finished")

    # One host's own view is its raw output, re-read from the server.
    page.get_by_role("button", name="app-2", exact=True).click()
    page.wait_for_function(
        "() => window.tsubameViewer.bufferText().includes('to-stderr')"
        " && !window.tsubameViewer.bufferText().includes('app-')"
    )
    lines = terminal_lines(page)
    assert lines[:12] == [f"tick {i}" for i in range(1, 13)]
    assert lines[12:] == ["progress 100%", "to-stderr"]
    page.get_by_role("button", name="All hosts").click()
    page.wait_for_function("() => window.tsubameViewer.bufferText().includes('app-2 ')")
    assert Execution.objects.get(pk=execution.pk).status == "failed"


# About 50 MB in all, half each of ordinary log lines, as fast as the host can print them.
HUGE_SCRIPT = (
    "seq -f 'line %07g of a long log, with ordinary text to make it about 70 bytes' 1 350000"
)
MEMORY_LIMIT_BYTES = 150 * 1024 * 1024


def javascript_memory(cdp) -> int:
    """What the page's JavaScript holds once garbage is collected: the heap, the typed arrays
    outside it (xterm.js keeps its scrollback in those) and the embedder's (DOM) heap."""
    cdp.send("HeapProfiler.collectGarbage")
    usage = cdp.send("Runtime.getHeapUsage")
    return usage["usedSize"] + usage["backingStorageSize"] + usage["embedderHeapUsedSize"]


def test_following_a_50_mb_log_keeps_the_tab_small(
    live_app, page, django_user_model, make_server, make_job, team
):

    job = make_job(HUGE_SCRIPT, [make_server(name="big-1"), make_server(name="big-2")])
    open_as_operator(page, live_app, django_user_model, team)
    execution = start(job)
    # Open the page on the whole log, as a person who followed it from the start would have.
    page.goto(f"/executions/{execution.pk}/?window=512")
    cdp = page.context.new_cdp_session(page)
    samples = []
    while not page.evaluate("() => window.tsubameViewer.finished"):
        samples.append(javascript_memory(cdp))
        assert len(samples) < 200, "the log did not end"
        page.wait_for_timeout(1000)
    lines = terminal_lines(page)
    assert lines[-1].endswith(
        "| line 0350000 of a long log, with ordinary text to make it about 70 bytes"
    )
    assert len(lines) <= page.evaluate("() => window.tsubameViewer.scrollback") + 100
    used = javascript_memory(cdp)
    print(f"JS memory following the log: at most {max(samples) / 2**20:.1f} MiB while it came")
    print(f"({len(samples)} samples), {used / 2**20:.1f} MiB at its end")
    assert max([*samples, used]) < MEMORY_LIMIT_BYTES

    # Switching to one host re-reads its end from the server, and stays as small.
    page.get_by_role("button", name="big-2", exact=True).click()
    page.wait_for_function(
        "() => window.tsubameViewer.bufferText().includes('line 0350000')"
        " && !window.tsubameViewer.bufferText().includes('big-')"
    )
    used = javascript_memory(cdp)
    print(f"JS memory on one host's view: {used / 2**20:.1f} MiB")
    assert used < MEMORY_LIMIT_BYTES
    screenshot(page, "viewer-huge-log")
