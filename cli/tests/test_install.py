"""The client installs on its own (`pip install ./cli`) and never loads the server's code."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

CLI_DIR = Path(__file__).resolve().parents[1]


@pytest.mark.timeout(300)
def test_installs_into_a_clean_environment_without_django(tmp_path: Path):
    source = tmp_path / "cli"
    shutil.copytree(CLI_DIR, source, ignore=shutil.ignore_patterns("tests", "build", "*.egg-info"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", str(source)],
        check=True,
        capture_output=True,
        timeout=240,
    )
    assert subprocess.run([str(venv / "bin" / "tsubame"), "--help"], timeout=30).returncode == 0
    loaded = subprocess.run(
        [str(python), "-c", "import sys, tsubame_cli.main; print(sorted(sys.modules))"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    assert "django" not in loaded
    assert "'websockets'" in loaded
