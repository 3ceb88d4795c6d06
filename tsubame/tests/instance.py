"""A tsubame instance of a test's own, run the way production runs it: `manage.py` in
subprocesses whose settings and keys come from their environment and TSUBAME_DATA_DIR.

Backup tests need this rather than the test database: what they prove is that the key files
in the data directory, loaded at start-up, come back with the database.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest

from tsubame.tests.processes import BASE_DIR, spawn

# The suite's own database decides: `make test` runs the suite once per configuration, so each
# proves its backups once (a backup round trip is slow: every step is a process).
BACKENDS = ["postgresql" if os.getenv("DATABASE_URL", "").startswith("postgres") else "sqlite"]
# The machine's PostgreSQL (trust authentication); each instance makes its own database.
POSTGRES = "postgres://postgres@127.0.0.1:5432"
# Settings of the test run itself that must not reach an instance.
OWN_SETTINGS = [
    "DATABASE_URL",
    "REDIS_URL",
    "TSUBAME_DATA_DIR",
    "DJANGO_ALLOW_ASYNC_UNSAFE",
    *(f"{name}{tail}" for name in ("SECRET_KEY", "ENCRYPTION_KEYS") for tail in ("", "_FILE")),
]


@dataclass
class Instance:
    data_dir: Path
    database_url: str | None = None  # None: SQLite in data_dir
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def env(self) -> dict[str, str]:
        env = {name: value for name, value in os.environ.items() if name not in OWN_SETTINGS}
        env["TSUBAME_DATA_DIR"] = str(self.data_dir)
        if self.database_url:
            env["DATABASE_URL"] = self.database_url
        return env | self.extra_env

    def manage(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=BASE_DIR,
            env=self.env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"manage.py {' '.join(args)} failed:\n{result.stderr}")
        return result

    def act(self, action: str) -> object:
        """Run one of tsubame.tests.instance_actions in this instance; its JSON, if any."""
        args = [sys.executable, "-m", "tsubame.tests.instance_actions", action]
        result = subprocess.run(
            args, cwd=BASE_DIR, env=self.env, capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 0, f"{action} failed:\n{result.stderr}"
        return json.loads(result.stdout) if result.stdout.strip() else None

    def start_writer(self, log: Path) -> subprocess.Popen[bytes]:
        """The `write` action in the background, once it has committed its first run."""
        args = [sys.executable, "-m", "tsubame.tests.instance_actions", "write"]
        process = spawn(args, self.env, log)
        # Its only output line, "ready", comes once the first write is committed.
        deadline = time.monotonic() + 60
        while "ready" not in log.read_text() and process.poll() is None:
            assert time.monotonic() < deadline, f"the writer did not start; see {log}"
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(0.05)
        assert process.poll() is None, f"the writer died:\n{log.read_text()}"
        return process

    def wipe(self) -> None:
        """Lose the database and the key files, as a lost disk or machine would."""
        for path in self.data_dir.iterdir():
            if path.name.startswith(("tsubame.sqlite3", "secret_key", "encryption_keys")):
                path.unlink()
        if self.database_url:
            name = self.database_url.rsplit("/", 1)[1]
            drop_database(name)
            create_database(name)


def postgres_available() -> str | None:
    """Why the PostgreSQL variant cannot run here, or None."""
    for tool in ("pg_dump", "pg_restore"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (Debian package postgresql-client)"
    try:
        psycopg.connect(f"{POSTGRES}/postgres", connect_timeout=5).close()
    except psycopg.OperationalError as exc:
        return f"no PostgreSQL at {POSTGRES}: {exc}"
    return None


def create_database(name: str) -> None:
    with psycopg.connect(f"{POSTGRES}/postgres", autocommit=True) as db:
        db.execute(f'CREATE DATABASE "{name}"')


def drop_database(name: str) -> None:
    with psycopg.connect(f"{POSTGRES}/postgres", autocommit=True) as db:
        db.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def instances(backend: str, tmp_path: Path) -> Iterator[Callable[[], Instance]]:
    """A factory of empty instances on `backend`; their databases are dropped afterwards."""
    if backend == "postgresql" and (reason := postgres_available()):
        pytest.skip(reason)
    databases: list[str] = []

    def make() -> Instance:
        data_dir = tmp_path / f"instance-{len(databases) + 1}"
        data_dir.mkdir()
        if backend == "sqlite":
            databases.append("")
            return Instance(data_dir)
        # Ours alone: a name no other test or person uses.
        name = f"tsubame_backup_test_{uuid.uuid4().hex[:12]}"
        create_database(name)
        databases.append(name)
        return Instance(data_dir, database_url=f"{POSTGRES}/{name}")

    try:
        yield make
    finally:
        for name in databases:
            if name:
                drop_database(name)
