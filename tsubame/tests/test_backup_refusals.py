"""What backup and restore refuse to do, and what they ask of the operator when the keys
come from the environment."""

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from tsubame.tests.instance import Instance

pytestmark = pytest.mark.timeout(300)


def test_restore_over_a_database_with_tables_needs_force(
    populated: Instance, tmp_path: Path
) -> None:
    before = populated.act("snapshot")
    populated.manage("backup", str(tmp_path / "backup"))
    populated.manage("ensure_superuser")  # a change made after the backup

    refused = populated.manage("restore", str(tmp_path / "backup"), check=False)
    assert refused.returncode != 0
    assert "--force" in refused.stderr
    assert populated.manage("shell", "-v", "0", "-c", SUPERUSERS).stdout.strip() == "1"

    populated.manage("restore", "--force", str(tmp_path / "backup"))
    assert populated.manage("shell", "-v", "0", "-c", SUPERUSERS).stdout.strip() == "0"
    assert populated.act("snapshot") == before


SUPERUSERS = (
    "from django.contrib.auth.models import User; "
    "print(User.objects.filter(is_superuser=True).count())"
)


def test_restore_of_a_damaged_backup_changes_nothing(populated: Instance, tmp_path: Path) -> None:
    dest = tmp_path / "backup"
    populated.manage("backup", str(dest))
    database = next(path for path in dest.iterdir() if path.name.startswith("tsubame."))
    damaged = bytearray(database.read_bytes())
    damaged[len(damaged) // 2] ^= 0xFF
    database.write_bytes(bytes(damaged))
    populated.wipe()

    refused = populated.manage("restore", str(dest), check=False)

    assert refused.returncode != 0
    assert "does not match its size and sha256" in refused.stderr
    restored_keys = (dest / "encryption_keys").read_text()
    assert (populated.data_dir / "encryption_keys").read_text() != restored_keys
    assert "[X]" not in populated.manage("showmigrations", "executions").stdout


def test_backup_into_a_directory_that_has_files_is_refused(
    populated: Instance, tmp_path: Path
) -> None:
    dest = tmp_path / "backup"
    dest.mkdir()
    (dest / "notes.txt").write_text("someone else's")

    refused = populated.manage("backup", str(dest), check=False)

    assert refused.returncode != 0
    assert "not an empty directory" in refused.stderr
    assert [path.name for path in dest.iterdir()] == ["notes.txt"]


def test_keys_from_the_environment_are_left_out_and_must_be_given_back(
    make_instance: Callable[[], Instance], tmp_path: Path
) -> None:
    keys = {"SECRET_KEY": "kept-elsewhere", "ENCRYPTION_KEYS": Fernet.generate_key().decode()}
    instance = make_instance()
    instance.extra_env = keys
    instance.manage("migrate", "--noinput")
    instance.act("populate")
    before = instance.act("snapshot")
    dest = tmp_path / "backup"

    made = instance.manage("backup", str(dest))

    assert "ENCRYPTION_KEYS comes from the environment" in made.stderr
    assert "SECRET_KEY comes from the environment" in made.stderr
    assert sorted(path.name for path in dest.iterdir()) == ["manifest.json", database_file(dest)]
    manifest = json.loads((dest / "manifest.json").read_text())
    assert manifest["keys"] == {"secret_key": "environment", "encryption_keys": "environment"}

    without_keys = make_instance()
    restored = without_keys.manage("restore", str(dest))
    assert "set ENCRYPTION_KEYS to the value kept with the backup" in restored.stderr
    assert "3 stored secrets cannot be decrypted" in restored.stderr
    assert without_keys.act("snapshot")["servers"]["keyed"]["undecryptable"] == [
        "passphrase",
        "private_key",
    ]

    with_keys = make_instance()
    with_keys.extra_env = keys
    restored = with_keys.manage("restore", str(dest))
    assert restored.stderr == ""
    assert with_keys.act("snapshot") == before


def database_file(dest: Path) -> str:
    return json.loads((dest / "manifest.json").read_text())["database"]["file"]


def test_backup_without_pg_dump_says_so_and_fails(tmp_path: Path) -> None:
    # Settings for a PostgreSQL database that is never reached: pg_dump is looked for first.
    instance = Instance(tmp_path / "data", database_url="postgres://nobody@127.0.0.1:9/none")
    instance.data_dir.mkdir()
    instance.extra_env = {"PATH": str(tmp_path / "empty")}

    refused = instance.manage("backup", str(tmp_path / "backup"), check=False)

    assert refused.returncode != 0
    assert "pg_dump was not found" in refused.stderr
    assert "postgresql-client" in refused.stderr
    assert not (tmp_path / "backup").exists()
