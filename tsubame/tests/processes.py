"""Starting the app's own processes (web server, `manage.py worker`) on the test database."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from django.conf import settings
from django.db import connection

BASE_DIR = Path(__file__).resolve().parents[2]


def database_url() -> str:
    """The URL of the test database, so that the subprocesses use the test's data."""
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def app_environment(static_root: Path | None = None) -> dict[str, str]:
    env = dict(os.environ)
    # Set by some Playwright/Django setups; the app must keep Django's async-safety checks.
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    return (
        env
        | {
            "DATABASE_URL": database_url(),
            "SECRET_KEY": settings.SECRET_KEY,
            "ENCRYPTION_KEYS": ",".join(settings.ENCRYPTION_KEYS),
            "Q_CLUSTER_NAME": settings.Q_CLUSTER["name"],
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "DEBUG": "false",
            "WORKERS": "2",
        }
        | ({"STATIC_ROOT": str(static_root)} if static_root else {})
    )


def spawn(args: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("ab") as log:
        return subprocess.Popen(
            args,
            cwd=BASE_DIR,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: teardown stops its children too
        )


def stop(processes: list[subprocess.Popen[bytes]], grace: float = 15) -> None:
    """Stop each process gracefully, then kill whatever is left of its process group.

    Only the leader gets TERM: `manage.py worker` then stops its django-q cluster in order,
    whereas TERM to the whole group kills the cluster's children before it can.
    """
    for process in processes:
        if process.poll() is None:
            process.terminate()
    deadline = time.monotonic() + grace
    for process in processes:
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(max(0.0, deadline - time.monotonic()))
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_webserver(env: dict[str, str], log_path: Path) -> tuple[subprocess.Popen[bytes], int]:
    """The production web server (tsubame.webserver) on a free port, once it accepts connections."""
    # Another process can take the port between probing and binding: try a few.
    for _attempt in range(3):
        port = free_port()
        args = [sys.executable, "-m", "tsubame.webserver", "-b", "127.0.0.1", "-p", str(port)]
        process = spawn(args, env, log_path)
        deadline = time.monotonic() + 30
        while process.poll() is None and time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                return process, port
            except OSError:
                time.sleep(0.05)
        stop([process])
    log = log_path.read_text(errors="replace")[-4000:]
    raise RuntimeError(f"the web server did not start; {log_path}:\n{log}")
