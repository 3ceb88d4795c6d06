"""PostgreSQL connections are pooled per process and survive the database dropping them."""

from __future__ import annotations

import pytest
import requests
from django.conf import settings
from django.db import connection

from accounts.models import ApiToken
from tsubame.tests.processes import app_environment, start_webserver, stop

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(120),
    pytest.mark.skipif(
        "postgresql" not in settings.DATABASES["default"]["ENGINE"],
        reason="PostgreSQL's connection pool",
    ),
]


# The web process's connections carry this name (libpq reads PGAPPNAME), so that only they
# are dropped: this process's own pooled connections are not the web process under test.
WEB_APPLICATION_NAME = "tsubame-pool-test-web"


def drop_web_sessions() -> None:
    """What a database restart does to a web process: its connections are gone."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND application_name = %s",
            [WEB_APPLICATION_NAME],
        )
        assert cursor.fetchone()[0] >= 1, "the web process held no connection to drop"


def test_connections_come_from_the_pool():
    assert connection.pool is not None
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    assert connection.pool.get_stats()["pool_size"] >= 1


def test_a_web_process_survives_the_database_dropping_its_connections(superuser, tmp_path):
    token = ApiToken.issue(superuser, "pool")[1]
    environment = app_environment() | {"PGAPPNAME": WEB_APPLICATION_NAME}
    web, port = start_webserver(environment, tmp_path / "web.log")
    try:
        url = f"http://127.0.0.1:{port}/api/v1/teams/"
        headers = {"Authorization": f"Bearer {token}"}
        for _ in range(5):
            assert requests.get(url, headers=headers, timeout=30).status_code == 200
        drop_web_sessions()
        # The pool checks a connection before handing it out: the dead one is replaced.
        assert requests.get(url, headers=headers, timeout=30).status_code == 200
    finally:
        stop([web])
    log = (tmp_path / "web.log").read_text()
    assert "Internal Server Error" not in log, log[-3000:]
