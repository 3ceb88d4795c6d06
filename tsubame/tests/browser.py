"""End-to-end browser tests: Debian's chromium, driven by Playwright, against the real stack.

A pytest plugin (``pytest_plugins = ["tsubame.tests.browser"]``) with these fixtures:

- ``live_app``: the production web server (``tsubame.webserver``) and a ``manage.py worker``,
  both as subprocesses on the pytest test database, in production mode (DEBUG off, WhiteNoise
  serving files that ``collectstatic`` put in a temporary STATIC_ROOT once per session). It has
  ``.url`` (``http://127.0.0.1:PORT``). Their logs go to ``out/browser/``.
- ``chromium``: one headless chromium for the whole session. Tests use it through
  ``browser``, which makes it usable for one test at a time (see ``chromium`` for why). Both
  skip when chromium or Playwright is missing (``make test`` installs both).
- ``page``: a fresh browser context and page per test, ``base_url`` set to the app, so
  ``page.goto("/admin/")`` works. A failing test leaves ``out/screenshots/FAILED-<test>.png``.

Helpers: ``log_in(page, login_url, username, password)`` and ``screenshot(page, name)``.

Why ``live_app`` is function-scoped: browser tests need ``transactional_db`` (the processes
see only committed data), and pytest-django flushes every table after each such test. The
flush recreates content types and permissions under new ids, which a long-lived daphne keeps
cached (``ContentType.objects.get_for_model``; the admin's log entries would then point at
rows that no longer exist), and a worker still busy with one test's run would write into the
next test's database. Fresh processes per test, stopped before the flush, cost about 1.3 s
per test and keep every test's logs apart.

Data a test creates in its own process reaches the app only once committed, and a test that
calls ``start_execution`` itself needs ``pytest.mark.real_queue`` (see the root conftest) so
that the worker gets the task; runs started through the app's own pages always go through the
real queue.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import pytest
from django.db import connections

from tsubame.tests.processes import app_environment, spawn, start_webserver, stop

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

BASE_DIR = Path(__file__).resolve().parents[2]
OUT_DIR = BASE_DIR / "out"
LOG_DIR = OUT_DIR / "browser"
SCREENSHOT_DIR = OUT_DIR / "screenshots"

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",  # chromium refuses to run as root with its sandbox on
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-gpu",
    "--no-first-run",
    # Debian's /usr/bin/chromium adds this itself when /dev/shm is small (Docker: 64 MB), but
    # its check breaks when /dev/shm is mounted twice, as on this machine.
    "--disable-dev-shm-usage",
]
TIMEOUT_MS = 10_000
MISSING_HINT = (
    "browser tests need Debian's chromium (/usr/bin/chromium) and the Python package "
    "playwright: `make test` installs both"
)

# The UI has no login page of its own yet; switch this when it has.
LOGIN_PATH = "/admin/login/"

_reports = pytest.StashKey[dict[str, pytest.TestReport]]()


@dataclass
class LiveApp:
    url: str
    daphne_log: Path
    worker_log: Path

    def logs(self) -> str:
        """The end of both logs, for assertion messages."""
        return "\n".join(
            f"--- {path} ---\n{path.read_text(errors='replace')[-4000:]}"
            for path in (self.daphne_log, self.worker_log)
        )


def slug(node: pytest.Item) -> str:
    return re.sub(r"[^\w.-]+", "-", f"{node.path.stem}.{node.name}").strip("-")


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Keep each phase's report on the item, so fixtures can tell a failed test at teardown."""
    report = yield
    item.stash.setdefault(_reports, {})[report.when] = report
    return report


def _failed(node: pytest.Item) -> bool:
    reports = node.stash.get(_reports, {})
    return any(report.failed for report in reports.values())


@pytest.fixture(scope="session")
def collected_static(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A STATIC_ROOT filled by `collectstatic`, as a release would have it."""
    root = tmp_path_factory.mktemp("static_root")
    done = subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "--verbosity", "0"],
        cwd=BASE_DIR,
        env=os.environ | {"STATIC_ROOT": str(root)},
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise RuntimeError(f"collectstatic failed:\n{done.stdout}{done.stderr}")
    return root


@pytest.fixture
def live_app(
    request: pytest.FixtureRequest, transactional_db: None, collected_static: Path
) -> Iterator[LiveApp]:
    """The web server + `manage.py worker` on the test database; stopped before the flush."""
    from django_q.brokers import get_broker

    get_broker().purge_queue()  # tasks left in Redis by earlier runs are not ours
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    name = slug(request.node)
    daphne_log, worker_log = LOG_DIR / f"{name}.daphne.log", LOG_DIR / f"{name}.worker.log"
    for path in (daphne_log, worker_log):
        path.unlink(missing_ok=True)
    env = app_environment(collected_static)
    worker = spawn([sys.executable, "manage.py", "worker"], env, worker_log)
    processes = [worker]
    try:
        web, port = start_webserver(env, daphne_log)
        processes.append(web)
        app = LiveApp(f"http://127.0.0.1:{port}", daphne_log, worker_log)
        print(f"live app {app.url}; logs: {daphne_log}, {worker_log}")  # shown if the test fails
        yield app
        exited = [process.args for process in processes if process.poll() is not None]
    finally:
        stop(processes)
    if exited:
        pytest.fail(f"exited during the test: {exited}\n{app.logs()}", pytrace=False)


@dataclass
class Chromium:
    browser: Browser
    loop: asyncio.AbstractEventLoop


@pytest.fixture(scope="session")
def chromium() -> Iterator[Chromium]:
    """One headless chromium for the session, parked between tests: use `browser` or `page`.

    Playwright's sync API runs an asyncio loop in a greenlet and leaves it marked as the
    running loop of the main thread. Left so, every later test in the session would fail:
    Django's ORM raises SynchronousOnlyOperation and asgiref's async_to_sync refuses to run.
    So the mark is removed here and put back only while a browser test runs.
    """
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing; {MISSING_HINT}")
    try:
        from playwright.sync_api import expect, sync_playwright
    except ImportError:
        pytest.skip(f"the playwright package is missing; {MISSING_HINT}")
    expect.set_options(timeout=TIMEOUT_MS)
    playwright = sync_playwright().start()
    try:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        loop = asyncio.get_running_loop()
        asyncio._set_running_loop(None)
        try:
            yield Chromium(browser, loop)
        finally:
            asyncio._set_running_loop(loop)
            browser.close()
    finally:
        playwright.stop()


@pytest.fixture
def browser(chromium: Chromium, monkeypatch: pytest.MonkeyPatch) -> Iterator[Browser]:
    """The session's chromium, usable for the length of one test.

    While it is usable, the test's own process counts as "inside an event loop" (see
    `chromium`), which changes three things until the test ends:
    - the ORM works only because DJANGO_ALLOW_ASYNC_UNSAFE is set (never for the app's
      processes);
    - Django hands out separate database connections (asgiref's Local turns context-local),
      closed here at the end so that none outlives the test;
    - async_to_sync refuses to run, so e.g. `executions.live.ring` from the test process
      only logs a warning: consumers still find changes by polling.
    """
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    asyncio._set_running_loop(chromium.loop)
    try:
        yield chromium.browser
    finally:
        connections.close_all()
        asyncio._set_running_loop(None)


@pytest.fixture
def page(request: pytest.FixtureRequest, live_app: LiveApp, browser: Browser) -> Iterator[Page]:
    """A new context (no cookies, no storage) and page per test, aimed at the live app."""
    context = browser.new_context(base_url=live_app.url)
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    try:
        yield page
        if _failed(request.node):
            path = screenshot(page, f"FAILED-{slug(request.node)}")
            print(f"screenshot of the failure: {path}")
    finally:
        context.close()


def screenshot(page: Page, name: str) -> Path:
    """Save the whole page as out/screenshots/<name>.png and return the path."""
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOT_DIR / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def log_in(page: Page, login_url: str, username: str, password: str) -> None:
    """Log in through a Django login form (username, password, submit) at `login_url`."""
    page.goto(login_url)
    page.fill('input[name="username"]', username)
    page.fill('input[name="password"]', password)
    with page.expect_navigation():
        page.click('[type="submit"]')
    if urlsplit(page.url).path == urlsplit(login_url).path:
        errors = page.locator(".errornote, .errorlist").all_inner_texts()
        raise AssertionError(f"logging in as {username!r} failed: {errors or page.title()}")
