"""/healthz and /readyz: open to anyone, naming each check and what failed."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from datetime import timedelta

import pytest
from django.db.models.functions import Now
from django.test import Client

from executions.models import WorkerHeartbeat
from tsubame.tests.processes import app_environment, free_port, start_webserver, stop

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]


@pytest.fixture
def live_worker() -> str:
    return WorkerHeartbeat.started("worker-host", 4242)


def test_healthz_answers_anyone_while_the_process_runs():
    response = Client().get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_fails_naming_the_workers_without_a_worker_heartbeat():
    response = Client().get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["failed"] == ["workers"]
    assert body["checks"] == {"database": "ok", "broker": "ok", "workers": "fail"}


def test_readyz_passes_with_a_live_worker(live_worker):
    response = Client().get("/readyz")
    assert response.status_code == 200
    assert response.json()["checks"] == {"database": "ok", "broker": "ok", "workers": "ok"}
    assert response.json()["failed"] == []


def test_a_stale_heartbeat_is_no_live_worker(live_worker, settings):
    settings.WORKER_HEARTBEAT_STALE_SECONDS = 30
    WorkerHeartbeat.objects.update(beat_at=Now() - timedelta(seconds=31))
    assert Client().get("/readyz").json()["failed"] == ["workers"]
    WorkerHeartbeat.beat(live_worker)
    assert Client().get("/readyz").status_code == 200


def test_readyz_says_the_redis_broker_is_down_when_it_is(live_worker, own_redis):
    response = Client().get("/readyz")
    assert response.status_code == 200
    assert response.json()["broker"] == "redis"

    own_redis.kill()

    response = Client().get("/readyz")
    assert response.status_code == 503
    assert response.json()["failed"] == ["broker"]
    own_redis.start()
    assert Client().get("/readyz").status_code == 200


def test_readyz_says_the_database_is_down_when_it_is(tmp_path):
    # A web server whose database does not answer (nothing listens on that port); with the
    # ORM broker the task queue is that database, and no heartbeat can be read either.
    url = f"postgres://tsubame@127.0.0.1:{free_port()}/tsubame"
    env = app_environment() | {"DATABASE_URL": url, "REDIS_URL": ""}
    server, port = start_webserver(env, tmp_path / "web.log")
    try:
        ready_status, ready = get(port, "/readyz")
        health_status, health = get(port, "/healthz")
    finally:
        stop([server])

    assert ready_status == 503
    assert ready["failed"] == ["database", "broker", "workers"]
    assert "127.0.0.1" not in json.dumps(ready)  # what failed, never the error's details
    # The process itself is fine: an orchestrator must not restart it for its database.
    assert (health_status, health) == (200, {"status": "ok"})


def get(port: int, path: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=60) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


def test_the_probes_answer_plain_http_when_https_is_enforced(client, settings):
    settings.SECURE_SSL_REDIRECT = True
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code in (200, 503)
    assert client.get("/executions/").status_code == 301
