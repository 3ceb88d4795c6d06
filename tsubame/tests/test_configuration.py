"""Configuration has one source, documented in one table, used by every deployment."""

import json
import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import yaml
from cryptography.fernet import Fernet

from tsubame.crypto import SecretTextField, Undecryptable

BASE_DIR = Path(__file__).resolve().parents[2]


def settings_variables() -> set[str]:
    source = (BASE_DIR / "tsubame" / "settings.py").read_text()
    names = set(re.findall(r'env\w*\(\s*"([A-Z_]+)"', source))
    names |= set(re.findall(r'os\.getenv\(\s*"([A-Z_]+)"', source))
    return names


def test_every_environment_variable_is_in_the_readme_table():
    readme = (BASE_DIR / "README.md").read_text()
    documented = set(re.findall(r"^\| `([A-Z_]+)` \|", readme, flags=re.MULTILINE))
    assert settings_variables() == documented


def test_compose_runs_two_web_processes_and_two_workers_on_postgres_and_redis():
    compose = yaml.safe_load((BASE_DIR / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) == {"postgres", "redis", "migrate", "web", "worker"}
    assert "manage.py migrate" in services["migrate"]["command"]
    assert services["web"]["command"][:3] == ["python", "-m", "tsubame.webserver"]
    assert services["worker"]["command"] == ["python", "manage.py", "worker"]
    for name in ("web", "worker"):
        assert services[name]["deploy"]["replicas"] == 2
        assert services[name]["depends_on"]["migrate"] == {
            "condition": "service_completed_successfully"
        }
    for name in ("migrate", "web", "worker"):
        env = services[name]["environment"]
        assert env["DATABASE_URL"].startswith("postgres://")
        assert env["REDIS_URL"] == "redis://redis:6379/0"
        assert set(env) <= settings_variables()


def test_secrets_round_trip_and_undecryptable_ones_are_flagged(settings):
    field = SecretTextField()
    stored = field.get_prep_value("s3cret")
    assert "s3cret" not in stored
    assert field.from_db_value(stored, None, None) == "s3cret"

    settings.ENCRYPTION_KEYS = [Fernet.generate_key().decode(), *settings.ENCRYPTION_KEYS]
    assert field.from_db_value(stored, None, None) == "s3cret"  # old keys still decrypt

    settings.ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    lost = field.from_db_value(stored, None, None)
    assert isinstance(lost, Undecryptable)
    assert field.get_prep_value(lost) == stored  # re-saving keeps the ciphertext intact


def production_environment(data_dir: Path) -> dict[str, str]:
    """A production-like configuration: HTTPS behind a proxy, no debug, real secrets."""
    keep = {name: os.environ[name] for name in ("PATH", "DATABASE_URL") if name in os.environ}
    return keep | {
        "TSUBAME_DATA_DIR": str(data_dir),
        "SECRET_KEY": secrets.token_urlsafe(50),
        "ENCRYPTION_KEYS": Fernet.generate_key().decode(),
        "DEBUG": "false",
        "ALLOWED_HOSTS": "tsubame.example.com",
        "CSRF_TRUSTED_ORIGINS": "https://tsubame.example.com",
        "SECURE_COOKIES": "true",
        "SECURE_SSL_REDIRECT": "true",
        "SECURE_HSTS_SECONDS": "31536000",
        "SECURE_HSTS_INCLUDE_SUBDOMAINS": "true",
        "SECURE_HSTS_PRELOAD": "true",
        "SECURE_PROXY_SSL_HEADER": "HTTP_X_FORWARDED_PROTO,https",
    }


def manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_deploy_check_is_clean_with_a_production_configuration(tmp_path):
    env = production_environment(tmp_path)
    done = manage("check", "--deploy", "--fail-level", "WARNING", env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "System check identified no issues" in done.stdout, done.stdout + done.stderr


def test_https_behind_a_proxy_comes_from_the_environment(tmp_path):
    names = ["SECURE_PROXY_SSL_HEADER", "SECURE_SSL_REDIRECT", "SECURE_HSTS_SECONDS"]
    code = (
        "import json; from django.conf import settings; "
        f"print(json.dumps([getattr(settings, name) for name in {names}]))"
    )
    shown = manage("shell", "--no-imports", "-c", code, env=production_environment(tmp_path))
    assert json.loads(shown.stdout) == [["HTTP_X_FORWARDED_PROTO", "https"], True, 31536000]
