"""Configuration has one source, documented in one table, used by every deployment."""

import re
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


def test_compose_runs_web_and_two_workers_on_postgres_and_redis():
    compose = yaml.safe_load((BASE_DIR / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) == {"postgres", "redis", "web", "worker"}
    assert "python -m tsubame.webserver" in services["web"]["command"]
    assert services["worker"]["command"] == ["python", "manage.py", "worker"]
    assert services["worker"]["deploy"]["replicas"] == 2
    for name in ("web", "worker"):
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
