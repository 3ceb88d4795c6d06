#!/usr/bin/env python
"""Benchmark of the live log viewer in a real browser against the OpenSSH client, side by side.

    .venv/bin/python bench/ui.py

Starts its own sshd on 127.0.0.1, a throw-away data directory (SQLite unless DATABASE_URL/
REDIS_URL are set), daphne and a `manage.py worker` as in production (DEBUG off, WhiteNoise
serving what `collectstatic` put in a temporary STATIC_ROOT), logs in as a superuser in
Debian's chromium through Playwright, and prints:
  1. click on Run -> "first-line" on screen,  vs  first byte of `ssh host echo first-line`
  2. opening a finished ~100 MB log (the page replays its last 2 MB) until its last line is on
     screen and the stream has ended,  vs  `ssh host tail -c 2097152 FILE` of the same output;
     plus the longest the page's main thread was blocked meanwhile
Times are the browser's own (from the click event, or from the start of the navigation), so
Playwright's round trips are not in them; a last line shows where the time went (for 1, also
when the worker had the run queued, claimed it and got its first output, by the same
machine's clock). "On screen"
means in the terminal's rendered rows, which is also far cheaper to poll than bufferText()
(200-350 ms for 2 MB here). A page not open after OPEN_TIMEOUT is reported as stuck, with
what daphne logged. Machines here are shared and noisy: read the ratios, not the absolute
numbers.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from common import BASE_DIR, WORK, OpenSsh, trusted_server, wait_for
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db.models import Sum
from playwright.sync_api import Page, sync_playwright
from playwright.sync_api import TimeoutError as PageTimeout

from accounts.models import Team
from executions import services
from executions.models import Execution, LogChunk, Trigger
from executions.views import TAIL_WINDOW_BYTES
from jobs.models import Job
from servers.models import Server
from servers.tests.sshd import GENEROUS_LIMITS, ClientKeys, LocalSshd
from tsubame.tests.processes import app_environment, spawn, start_webserver, stop

FIRST_ROUNDS = int(os.getenv("BENCH_ROUNDS", "5"))
OPEN_ROUNDS = 3
OPEN_TIMEOUT = 15  # seconds: a round that takes longer is reported as stuck
FIRST_SCRIPT = "echo first-line; sleep 1"
# 75 MB of random bytes in base64: exactly 1,000,000 lines of 100 characters. `tee` leaves the
# same output in a file on the server for the reference to read.
BIG_FILE = f"{WORK.name}.log"  # in the login user's home on the benchmark's sshd
BIG_SCRIPT = f"head -c 75000000 /dev/urandom | base64 -w 100 | tee ~/{BIG_FILE}"
# Unique per run: with DATABASE_URL set, the database may hold an earlier run's rows.
NAME, PASSWORD = WORK.name, "bench-password-1234"

# As in tsubame/tests/browser.py (a pytest plugin, so not imported here); see the reasons there.
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-gpu",
    "--no-first-run",
    "--disable-dev-shm-usage",
]

# Runs in every page before its own scripts: records when the page's WebSocket opened and
# delivered output, the longest gap between ticks of a 5 ms timer (i.e. the longest time the
# main thread could not run anything: a frozen tab), and when a click happened, in wall-clock
# milliseconds kept across the navigation the click starts.
PROBE = """(() => {
  const probe = { longestStall: 0, socketOpen: null, firstOutput: null, ended: null };
  addEventListener("click", () => {
    sessionStorage.setItem("benchClickedAt", String(performance.timeOrigin + performance.now()));
  }, true);
  let tick = performance.now();
  setInterval(() => {
    const now = performance.now();
    probe.longestStall = Math.max(probe.longestStall, now - tick);
    tick = now;
  }, 5);
  const NativeWebSocket = window.WebSocket;
  window.WebSocket = class extends NativeWebSocket {
    constructor(...args) {
      super(...args);
      this.addEventListener("open", () => { probe.socketOpen ??= performance.now(); });
      this.addEventListener("message", (event) => {
        if (event.data.startsWith('{"type": "output"')) probe.firstOutput ??= performance.now();
        if (event.data.startsWith('{"type": "end"')) probe.ended = performance.now();
      });
    }
  };
  window.benchProbe = probe;
})();"""

# True (the time, in the page's clock) once `text` is in the terminal's rendered rows.
SHOWN = """([text, mustHaveEnded]) => {
  const rows = document.querySelector("#terminal .xterm-rows");
  if (!rows || (mustHaveEnded && !window.tsubameViewer.finished)) return false;
  return rows.textContent.includes(text) && performance.now();
}"""

# Milliseconds since the navigation began (the page's clock), and what it takes to convert.
TIMELINE = """() => {
  const navigation = performance.getEntriesByType("navigation")[0];
  const probe = window.benchProbe;
  return {
    marks: { html: navigation.responseEnd, ready: navigation.domContentLoadedEventEnd,
             socketOpen: probe.socketOpen, firstOutput: probe.firstOutput, ended: probe.ended },
    stall: probe.longestStall,
    origin: performance.timeOrigin,
    clickedAt: Number(sessionStorage.getItem("benchClickedAt")),
  };
}"""


@dataclass
class Round:
    marks: dict[str, float]  # milliseconds since the click or navigation, as the page saw them
    stall: float  # the longest the page's main thread was blocked, in milliseconds
    clicked_at: float = 0.0  # wall-clock milliseconds of the click, for server-side marks
    execution_url: str = ""

    @property
    def seconds(self) -> float:
        return self.marks["shown"] / 1000


@dataclass
class BigLog:
    pk: int
    url: str
    stored: int
    last_line: str


def main() -> None:
    call_command("migrate", verbosity=0)
    (WORK / "keys").mkdir()
    keys = ClientKeys.generate(WORK / "keys")
    database = settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[1]
    broker = "redis" if settings.REDIS_URL else "orm"
    rounds = f"{FIRST_ROUNDS} + {OPEN_ROUNDS} rounds"
    print(f"tsubame UI benchmark: {database} database, {broker} broker, chromium, {rounds}")
    with LocalSshd(keys, limits=GENEROUS_LIMITS) as sshd:
        openssh = OpenSsh(sshd, keys)
        try:
            with running_app() as url:
                measured = report(sshd, keys, openssh, url)
        finally:
            openssh.seconds(f"rm -f ~/{BIG_FILE}")
    if measured:
        shutil.rmtree(WORK)
    else:
        print(f"logs: {WORK}")


@contextmanager
def running_app() -> Iterator[str]:
    """The web server and a worker on the benchmark's data, as tsubame.tests.browser runs them."""
    static_root = WORK / "static"
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "--verbosity", "0"],
        cwd=BASE_DIR,
        env=os.environ | {"STATIC_ROOT": str(static_root)},
        check=True,
    )
    env = app_environment(static_root)
    processes = [spawn([sys.executable, "manage.py", "worker"], env, WORK / "worker.log")]
    try:
        web, port = start_webserver(env, WORK / "daphne.log")
        processes.append(web)
        yield f"http://127.0.0.1:{port}"
    except BaseException:
        print(f"logs: {WORK}", file=sys.stderr)
        raise
    finally:
        stop(processes)


def report(sshd: LocalSshd, keys: ClientKeys, openssh: OpenSsh, url: str) -> bool:
    """Measure and print; False if the big log's page got stuck instead of opening."""
    # Everything that uses the ORM happens before Playwright starts: its sync API leaves an
    # asyncio loop marked as running in this thread, which the ORM then refuses to run under.
    team = Team.objects.create(name=NAME)
    get_user_model().objects.create_superuser(NAME, password=PASSWORD)
    server = trusted_server(team, sshd, keys)
    first_job = Job.objects.create(team=team, name="first line", script=FIRST_SCRIPT)
    first_job.servers.set([server])
    big = store_big_log(team, server)
    # The worker indexes the big log for search in the background, writing all the while:
    # clicks on Run measured meanwhile would time that (seconds on SQLite, whose one writer
    # each claim waits for), not how a run starts.
    wait_for(lambda: not LogChunk.objects.filter(indexed=False).exists(), timeout=900, every=1)

    ssh_first = [openssh.seconds("echo first-line", first_byte=True) for _ in range(FIRST_ROUNDS)]
    tail = f"tail -c {TAIL_WINDOW_BYTES} ~/{BIG_FILE}"
    ssh_tail = [openssh.seconds(tail) for _ in range(OPEN_ROUNDS)]

    stuck = ""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        try:
            context = browser.new_context(base_url=url, viewport={"width": 1280, "height": 800})
            context.set_default_timeout(60_000)
            context.add_init_script(PROBE)
            page = context.new_page()
            log_in(page)
            job_url = f"/jobs/{first_job.pk}/"
            first_line(page, job_url)  # warm-up: first requests, static files, bytecode
            firsts = [first_line(page, job_url) for _ in range(FIRST_ROUNDS)]
            opens: list[Round] = []
            for _ in range(OPEN_ROUNDS):
                try:
                    opens.append(open_log(page, big))
                except PageTimeout:
                    stuck = why_stuck(page, big)
                    break  # the next rounds would wait just as long for the same thing
        finally:
            browser.close()
    add_server_marks(firsts)  # the ORM again, now that Playwright is done

    first, reference_first = median_seconds(firsts), statistics.median(ssh_first)
    reference_tail = statistics.median(ssh_tail)
    rows = [
        ("1. click Run -> first line shown", f"{first * 1000:.0f} ms",
         f"{reference_first * 1000:.0f} ms (ssh echo, 1st byte)", first / reference_first,
         "none given"),
    ]  # fmt: skip
    name = f"2. open {big.stored / 1e6:.0f} MB log at its end"
    reference = f"{reference_tail * 1000:.0f} ms (ssh tail -c 2 MiB)"
    if stuck:
        rows.append((name, f"> {OPEN_TIMEOUT} s", reference, None, "< 2 s"))
    else:
        opened = median_seconds(opens)
        stall = statistics.median(r.stall for r in opens)
        rows.append((name, f"{opened:.2f} s", reference, opened / reference_tail, "< 2 s"))
        rows.append(("   longest main-thread stall", f"{stall:.0f} ms", "", None, ""))
    print(f"{'':34} {'tsubame':>10}  {'reference':<30} {'ratio':>6}  target")
    for name, ours_text, theirs_text, ratio, target in rows:
        ratio_text = f"{ratio:.1f}" if ratio is not None else ""
        line = f"{name:34} {ours_text:>10}  {theirs_text:<30} {ratio_text:>6}  {target}"
        print(line.rstrip())
    print("where the time went, as the page saw it (medians, ms since the click/navigation):")
    marks = ["queued", "claimed", "output", "html", "ready", "socketOpen", "firstOutput", "shown"]
    print("  1. " + timeline(firsts, marks))
    if stuck:
        print("  2. " + stuck)
    else:
        marks = ["html", "ready", "socketOpen", "firstOutput", "ended", "shown"]
        print("  2. " + timeline(opens, marks))
    return not stuck


def store_big_log(team: Team, server: Server) -> BigLog:
    job = Job.objects.create(team=team, name="big", script=BIG_SCRIPT)
    job.servers.set([server])
    execution = services.start_execution(job, trigger=Trigger.SYSTEM)
    wait_for(lambda: Execution.objects.get(pk=execution.pk).is_finished, timeout=300, every=0.1)
    execution.refresh_from_db()
    if execution.status != "succeeded":
        raise RuntimeError(f"the big execution {execution.pk} ended {execution.status}")
    chunks = LogChunk.objects.filter(execution=execution)
    stored = chunks.aggregate(n=Sum("size"))["n"]
    end = b"".join(reversed(chunks.order_by("-seq").values_list("data", flat=True)[:2]))
    last_line = end.rstrip(b"\n").rsplit(b"\n", 1)[-1].decode()
    return BigLog(execution.pk, f"/executions/{execution.pk}/", stored, last_line)


def log_in(page: Page) -> None:
    page.goto("/login/")
    page.fill('input[name="username"]', NAME)
    page.fill('input[name="password"]', PASSWORD)
    with page.expect_navigation():
        page.click('[type="submit"]')
    if page.url.endswith("/login/"):
        raise RuntimeError("logging in failed")


def first_line(page: Page, job_url: str) -> Round:
    """From the click on Run until "first-line" is on screen."""
    page.goto(job_url)
    page.click("#run-default button")
    shown = page.wait_for_function(SHOWN, arg=["first-line", False], polling=5).json_value()
    page.wait_for_function("() => window.tsubameViewer.finished")  # no overlap with the next
    timeline = page.evaluate(TIMELINE)
    # The page's clock starts with the navigation that the click started a moment before.
    offset = timeline["origin"] - timeline["clickedAt"]
    marks = {name: ms + offset for name, ms in (timeline["marks"] | {"shown": shown}).items()}
    return Round(marks, timeline["stall"], timeline["clickedAt"], page.url)


def add_server_marks(rounds: list[Round]) -> None:
    """When each round's execution was queued, claimed by a worker, and its first output
    arrived in the worker, in milliseconds since the click (the same machine's clock)."""
    for round_ in rounds:
        pk = int(round_.execution_url.rstrip("/").rsplit("/", 1)[1])
        execution = Execution.objects.get(pk=pk)
        first = LogChunk.objects.filter(execution=execution).order_by("seq").first()
        times = {"queued": execution.enqueued_at, "claimed": execution.started_at}
        times["output"] = first.created_at if first else None
        for name, at in times.items():
            if at is not None:
                round_.marks[name] = at.timestamp() * 1000 - round_.clicked_at


def open_log(page: Page, big: BigLog) -> Round:
    """From navigating to the big log's page until its last line is on screen, stream ended."""
    page.goto("about:blank")
    page.goto(big.url, wait_until="commit")
    shown = page.wait_for_function(
        SHOWN, arg=[big.last_line, True], polling=5, timeout=OPEN_TIMEOUT * 1000
    ).json_value()
    timeline = page.evaluate(TIMELINE)
    text = page.evaluate("() => window.tsubameViewer.bufferText()")
    if not text.rstrip("\n").endswith(big.last_line):
        raise RuntimeError("the terminal does not end with the log's last line")
    return Round(timeline["marks"] | {"shown": shown}, timeline["stall"])


def why_stuck(page: Page, big: BigLog) -> str:
    """What the page shows and what the server logged, for a page that never opened."""
    state = page.evaluate("() => document.getElementById('stream-state').textContent")
    probe = page.evaluate("() => window.benchProbe")
    received = "no output received" if probe["firstOutput"] is None else "output, not its end"
    log = (WORK / "daphne.log").read_text(errors="replace")
    marker = f"live output of execution {big.pk} failed"
    lines = log.rsplit(marker, 1)[1].splitlines()[1:] if marker in log else []
    # The exception's own line: the traceback's other lines are indented or say "Traceback".
    errors = (line for line in lines if line[:1].isalpha() and "Traceback" not in line)
    error = next(errors, "no error logged")
    return f"stuck: the page says {state!r}, {received}; daphne.log: {error}"


def median_seconds(rounds: list[Round]) -> float:
    return statistics.median(r.seconds for r in rounds)


def timeline(rounds: list[Round], marks: list[str]) -> str:
    return ", ".join(
        f"{mark} {statistics.median(r.marks[mark] for r in rounds):.0f}" for mark in marks
    )


if __name__ == "__main__":
    main()
