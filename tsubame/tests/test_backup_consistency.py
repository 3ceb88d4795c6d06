"""A backup taken while executions and their output are being written is a valid database
holding one consistent moment: every run it has, it has whole, and the count kept alongside
in the same transactions agrees."""

import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from tsubame.tests.instance import Instance
from tsubame.tests.processes import stop

pytestmark = pytest.mark.timeout(300)


def test_backup_while_runs_are_written_is_a_consistent_snapshot(
    make_instance: Callable[[], Instance], tmp_path: Path
) -> None:
    live = make_instance()
    live.manage("migrate", "--noinput")
    writer = live.start_writer(tmp_path / "writer.log")
    try:
        live.manage("backup", str(tmp_path / "backup"))
        restored = make_instance()
        restored.manage("restore", str(tmp_path / "backup"))
        snapshot = restored.act("writes")
        # The writer went on after the backup: the backup neither stopped nor blocked it.
        wait_for_more_writes(live, than=snapshot["executions"])
    finally:
        stop([writer])

    assert snapshot["executions"] >= 1
    assert snapshot["incomplete"] == []
    assert snapshot["counted"] == snapshot["executions"]
    if live.database_url is None:
        copy = sqlite3.connect(tmp_path / "backup" / "tsubame.sqlite3")
        assert copy.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        copy.close()


def wait_for_more_writes(instance: Instance, than: int) -> None:
    for _attempt in range(100):
        if instance.act("writes")["counted"] > than:
            return
    raise AssertionError(f"the writer stopped at {than} runs")
