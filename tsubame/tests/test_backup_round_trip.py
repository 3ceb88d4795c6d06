"""A backup brings back, after the database and the key files are lost, servers whose
secrets still decrypt and output that is byte for byte what was stored."""

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from tsubame.tests.instance import Instance

pytestmark = pytest.mark.timeout(300)


def test_restore_after_losing_database_and_keys_gives_back_secrets_and_logs(
    populated: Instance, tmp_path: Path
) -> None:
    before = populated.act("snapshot")
    assert before["servers"]["keyed"]["undecryptable"] == []
    assert before["servers"]["keyed"]["secrets"]["passphrase"] == "a passphrase, not ASCII: ✓"
    assert before["logs"]
    populated.manage("backup", str(tmp_path / "backup"))

    populated.wipe()
    restored = populated.manage("restore", str(tmp_path / "backup"))

    assert restored.stderr == ""  # no warning: the restored keys decrypt every secret
    after = populated.act("snapshot")
    assert after == before


def test_restored_instance_on_another_machine_reads_the_secrets(
    populated: Instance, make_instance: Callable[[], Instance], tmp_path: Path
) -> None:
    before = populated.act("snapshot")
    populated.manage("backup", str(tmp_path / "backup"))
    elsewhere = make_instance()  # a fresh data directory: keys of its own until the restore

    elsewhere.manage("restore", str(tmp_path / "backup"))

    assert elsewhere.act("snapshot") == before


def test_backup_is_private_and_lists_each_file_with_its_checksum(
    populated: Instance, tmp_path: Path
) -> None:
    dest = tmp_path / "backup"
    populated.manage("backup", str(dest))

    assert dest.stat().st_mode & 0o777 == 0o700
    files = sorted(path.name for path in dest.iterdir())
    database = "tsubame.pgdump" if populated.database_url else "tsubame.sqlite3"
    assert files == sorted(["manifest.json", "secret_key", "encryption_keys", database])
    assert {oct(path.stat().st_mode & 0o777) for path in dest.iterdir()} == {"0o600"}
    manifest = json.loads((dest / "manifest.json").read_text())
    assert manifest["database"] == {
        "engine": "postgresql" if populated.database_url else "sqlite",
        "file": database,
    }
    assert manifest["keys"] == {"secret_key": "included", "encryption_keys": "included"}
    assert "executions.0001_initial" in manifest["migrations"]
    assert manifest["tsubame_version"]
    for name in files:
        if name != "manifest.json":
            data = (dest / name).read_bytes()
            expected = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
            assert manifest["files"][name] == expected
