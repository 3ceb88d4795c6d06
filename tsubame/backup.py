"""Backups taken while tsubame runs, and their restore (`manage.py backup` / `restore`).

A backup is a private directory (0700, files 0600: it holds the encryption keys) with:
- the database: SQLite copied with SQLite's online backup API, which reads one consistent
  snapshot while web and workers go on writing (WAL); PostgreSQL as a `pg_dump` archive,
  which is one snapshot by design;
- the key files `secret_key` and `encryption_keys` from TSUBAME_DATA_DIR, unless the keys
  come from the environment, in which case the manifest says they must be kept elsewhere;
- `manifest.json`: when, which version and database engine, the migrations the copy has,
  and every file's size and sha256, which a restore checks before it changes anything.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import tomllib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.db import DatabaseError, connection
from django.db.migrations.loader import MigrationLoader
from django.db.migrations.recorder import MigrationRecorder

from tsubame.crypto import secret_fields
from tsubame.settings import envsecret

MANIFEST = "manifest.json"
FORMAT = 1
DATABASE_FILES = {"sqlite": "tsubame.sqlite3", "postgresql": "tsubame.pgdump"}
# Each key file in TSUBAME_DATA_DIR and the setting that, when given, replaces it.
KEY_FILES = {"secret_key": "SECRET_KEY", "encryption_keys": "ENCRYPTION_KEYS"}
KEY_PURPOSES = {
    "SECRET_KEY": "without it, sessions and password-reset links stop working (no data is lost)",
    "ENCRYPTION_KEYS": "without it, server credentials, secret variables and parameters, "
    "webhook secrets and notification channel URLs in this backup cannot be decrypted",
}


class BackupError(Exception):
    pass


@dataclass
class Outcome:
    """What a backup or restore did (notes) and what its operator must act on (warnings)."""

    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def backup(dest: Path) -> Outcome:
    """Copy the database, the key files and a manifest into `dest` (absent or empty)."""
    engine = _engine()
    if engine == "postgresql":
        _require_tool("pg_dump")
    _make_private_directory(dest)
    outcome = Outcome()
    written: list[Path] = []
    try:
        database = dest / DATABASE_FILES[engine]
        written.append(database)
        if engine == "sqlite":
            migrations = _backup_sqlite(Path(settings.DATABASES["default"]["NAME"]), database)
        else:
            migrations = _applied_migrations()
            _backup_postgresql(database)
        keys = {}
        for filename, setting in KEY_FILES.items():
            if envsecret(setting) is not None:
                keys[filename] = "environment"
                outcome.warnings.append(
                    f"{setting} comes from the environment, so it is not in this backup: keep "
                    f"it separately and give it to the restored instance; {KEY_PURPOSES[setting]}."
                )
            else:
                written.append(dest / filename)
                _write_private(dest / filename, (settings.DATA_DIR / filename).read_bytes())
                keys[filename] = "included"
        manifest = {
            "format": FORMAT,
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "tsubame_version": _version(),
            "database": {"engine": engine, "file": database.name},
            "keys": keys,
            "migrations": migrations,
            "files": {path.name: _describe(path) for path in written},
        }
        written.append(dest / MANIFEST)
        _write_private(dest / MANIFEST, json.dumps(manifest, indent=2).encode() + b"\n")
    except BaseException:
        # A backup without its manifest is refused by restore anyway; leave nothing behind
        # that looks like one.
        for path in written:
            path.unlink(missing_ok=True)
        raise
    size = sum(entry["size"] for entry in manifest["files"].values())
    included = sum(state == "included" for state in keys.values())
    outcome.notes.append(
        f"Backed up the {engine} database ({len(migrations)} migrations applied) and "
        f"{included} key file(s) to {dest} ({size} bytes)."
        + (" It holds the keys: store it as you would a password." if included else "")
    )
    return outcome


def restore(src: Path, force: bool = False) -> Outcome:
    """Put the database and key files of the backup in `src` in place of the current ones.

    Every file is checked against the manifest before anything changes; a database that
    already has tables is replaced only with `force`.
    """
    manifest = verify(src)
    engine = _engine()
    if manifest["database"]["engine"] != engine:
        raise BackupError(
            f"this backup holds a {manifest['database']['engine']} database, but the configured "
            f"database (DATABASE_URL) is {engine}"
        )
    if engine == "postgresql":
        _require_tool("pg_restore")
    tables = _existing_tables()
    if tables and not force:
        raise BackupError(
            f"the configured database already has {len(tables)} tables; a restore replaces it "
            "completely: pass --force to overwrite it (stop the web server and workers first)"
        )
    database = src / manifest["database"]["file"]
    connection.close()  # nothing of ours holds the database while it is replaced
    if engine == "sqlite":
        _restore_sqlite(database, Path(settings.DATABASES["default"]["NAME"]))
    else:
        _restore_postgresql(database, clean=bool(tables))
    connection.close()
    outcome = Outcome(notes=[f"Restored the {engine} database from {src}."])
    for filename, setting in KEY_FILES.items():
        if manifest["keys"][filename] == "included":
            _replace_private(settings.DATA_DIR / filename, (src / filename).read_bytes())
            outcome.notes.append(f"Restored {settings.DATA_DIR / filename}.")
            if envsecret(setting) is not None:
                outcome.warnings.append(
                    f"{setting} is set in the environment and takes precedence over the "
                    f"restored file {filename}: unset it, or set it to the file's value."
                )
        elif envsecret(setting) is None:
            outcome.warnings.append(
                f"The backup's {setting} came from the environment and is not in it: set "
                f"{setting} to the value kept with the backup; {KEY_PURPOSES[setting]}."
            )
    outcome.warnings += _migration_warnings(manifest["migrations"])
    outcome.warnings += _secrets_warnings()
    return outcome


def verify(src: Path) -> dict[str, Any]:
    """The backup's manifest, once every file it lists has its recorded size and sha256."""
    try:
        manifest = json.loads((src / MANIFEST).read_text())
    except FileNotFoundError:
        raise BackupError(f"{src} has no {MANIFEST}: it is not a complete tsubame backup") from None
    except ValueError as exc:
        raise BackupError(f"{src / MANIFEST} is not valid JSON: {exc}") from None
    if manifest.get("format") != FORMAT:
        raise BackupError(f"{src / MANIFEST} is of format {manifest.get('format')!r}, not {FORMAT}")
    files = manifest["files"]
    needed = [manifest["database"]["file"]]
    needed += [name for name, state in manifest["keys"].items() if state == "included"]
    for name in needed:
        if name not in files:
            raise BackupError(f"{src / MANIFEST} does not list {name}")
    for name, expected in files.items():
        path = src / name
        if Path(name).name != name:
            raise BackupError(f"{src / MANIFEST} names a file outside the backup: {name!r}")
        if not path.is_file():
            raise BackupError(f"{path} is missing")
        if _describe(path) != expected:
            raise BackupError(f"{path} does not match its size and sha256 in the manifest")
    return manifest


def _engine() -> str:
    if connection.vendor not in DATABASE_FILES:
        raise BackupError(f"backups support SQLite and PostgreSQL, not {connection.vendor}")
    return connection.vendor


def _require_tool(name: str) -> None:
    if shutil.which(name) is None:
        raise BackupError(
            f"{name} was not found on PATH. Install the PostgreSQL client tools (Debian: "
            f"postgresql-client), of the server's major version or newer."
        )


def _make_private_directory(dest: Path) -> None:
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise BackupError(f"{dest} exists and is not an empty directory")
    dest.mkdir(mode=0o700, parents=True, exist_ok=True)
    dest.chmod(0o700)  # mkdir's mode is cut by the umask, and an existing one keeps its own


def _create_private(path: Path) -> None:
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _replace_private(path: Path, data: bytes) -> None:
    # Written in full under a private name, then renamed into place: a process starting
    # meanwhile reads the old key or the new one, never half of one.
    draft = path.with_name(f".{path.name}.{os.getpid()}")
    draft.unlink(missing_ok=True)
    _write_private(draft, data)
    os.replace(draft, path)


def _describe(path: Path) -> dict[str, Any]:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1024 * 1024):
            digest.update(block)
    return {"size": path.stat().st_size, "sha256": digest.hexdigest()}


def _version() -> str | None:
    try:
        with (Path(settings.BASE_DIR) / "pyproject.toml").open("rb") as f:
            return tomllib.load(f)["project"]["version"]
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        return None


def _backup_sqlite(source: Path, target: Path) -> list[str]:
    """Copy the live database into `target`; the migrations its copy has."""
    if not source.is_file():
        raise BackupError(f"there is no database at {source}")
    _create_private(target)
    live = sqlite3.connect(source, timeout=30)
    copy = sqlite3.connect(target)
    try:
        # In one step (pages=-1): the copy reads a single snapshot under one read
        # transaction, which in WAL mode never blocks the web server's or workers' writes.
        live.backup(copy, pages=-1)
        # A single self-contained file, which also opens read-only (WAL would need a -shm).
        copy.execute("PRAGMA journal_mode=DELETE")
        result = copy.execute("PRAGMA integrity_check").fetchall()
        if result != [("ok",)]:
            raise BackupError(f"the copy failed its integrity check: {result[:5]}")
        rows = copy.execute("SELECT app, name FROM django_migrations ORDER BY id").fetchall()
    finally:
        copy.close()
        live.close()
    return [f"{app}.{name}" for app, name in rows]


def _applied_migrations() -> list[str]:
    rows = MigrationRecorder(connection).migration_qs.order_by("id").values_list("app", "name")
    return [f"{app}.{name}" for app, name in rows]


def _postgresql_environment() -> dict[str, str]:
    """libpq's environment for the configured database: the password never in argv."""
    db = connection.settings_dict
    # Django's own psql client maps OPTIONS (sslmode, passfile, service...) the same way.
    _args, env = connection.client.settings_to_cmd_args_env(db, [])
    given = {
        "PGDATABASE": db["NAME"],
        "PGUSER": db["USER"],
        "PGHOST": db["HOST"],
        "PGPORT": str(db["PORT"] or ""),
    }
    return os.environ | (env or {}) | {name: value for name, value in given.items() if value}


def _run_postgresql_tool(args: list[str]) -> None:
    result = subprocess.run(
        args, env=_postgresql_environment(), stdin=subprocess.DEVNULL, capture_output=True
    )
    if result.returncode != 0:
        detail = result.stderr.decode(errors="replace").strip()
        raise BackupError(f"{args[0]} failed (exit code {result.returncode}): {detail}")


def _backup_postgresql(target: Path) -> None:
    _create_private(target)  # pg_dump writes into it and keeps its mode
    _run_postgresql_tool(["pg_dump", "--format=custom", "--no-password", f"--file={target}"])


def _existing_tables() -> list[str]:
    if connection.vendor == "sqlite":
        # Looked at without Django, whose connection would create a missing file.
        path = Path(settings.DATABASES["default"]["NAME"])
        if not path.is_file():
            return []
        with contextlib.closing(sqlite3.connect(path, timeout=30)) as db:
            rows = db.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
        return [name for (name,) in rows]
    return connection.introspection.table_names()


def _restore_sqlite(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    if not target.exists():
        _create_private(target)
    # SQLite's backup API in reverse rather than a file copy: it writes through the target's
    # own journal (WAL), so a stale -wal file cannot be replayed over the restored pages.
    copy = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    live = sqlite3.connect(target, timeout=30)
    try:
        copy.backup(live, pages=-1)
    finally:
        live.close()
        copy.close()


def _restore_postgresql(source: Path, clean: bool) -> None:
    args = ["pg_restore", "--no-password", "--exit-on-error", "--single-transaction"]
    # Owner and grants are those of whoever restores: the backed-up roles may not exist here.
    args += ["--no-owner", "--no-privileges"]
    if clean:
        args += ["--clean", "--if-exists"]
    _run_postgresql_tool([*args, f"--dbname={connection.settings_dict['NAME']}", str(source)])


def _migration_warnings(applied: list[str]) -> list[str]:
    loader = MigrationLoader(None, ignore_no_migrations=True)
    known = {f"{app}.{name}" for app, name in loader.disk_migrations}
    warnings = []
    if known - set(applied):
        warnings.append(
            "The backup is older than this code: run `manage.py migrate` before starting tsubame."
        )
    if unknown := sorted(set(applied) - known):
        warnings.append(
            f"The backup has {len(unknown)} migrations this code does not know (it comes from "
            f"a newer tsubame), e.g. {unknown[0]}: run the version that made it."
        )
    return warnings


def _secrets_warnings() -> list[str]:
    """Whether the keys tsubame will use decrypt every secret in the restored database."""
    text = envsecret("ENCRYPTION_KEYS")
    path = settings.DATA_DIR / "encryption_keys"
    if text is None and path.is_file():
        text = path.read_text()
    keys = [key.strip() for key in (text or "").split(",") if key.strip()]
    try:
        cipher = MultiFernet([Fernet(key.encode()) for key in keys])
    except ValueError:
        return ["ENCRYPTION_KEYS does not hold Fernet keys: no secret can be decrypted."]
    undecryptable = 0
    with connection.cursor() as cursor:
        for model, fields in secret_fields():
            table = connection.ops.quote_name(model._meta.db_table)
            for secret in fields:
                column = connection.ops.quote_name(secret.column)
                try:
                    cursor.execute(f"SELECT {column} FROM {table} WHERE {column} IS NOT NULL")
                except DatabaseError:
                    continue  # not there before `migrate`; that warning is given already
                for (value,) in cursor:
                    try:
                        cipher.decrypt(value.encode())
                    except InvalidToken:
                        undecryptable += 1
    connection.close()
    if not undecryptable:
        return []
    return [
        f"{undecryptable} stored secrets cannot be decrypted with the ENCRYPTION_KEYS tsubame "
        "will use: give it the keys kept with the backup, or those secrets stay unusable."
    ]
