"""/healthz and /readyz for load balancers and orchestrators: no login, nothing secret.

/healthz says the web process answers. /readyz says whether the installation can run jobs
now: the database answers, the task broker answers (Redis when REDIS_URL is set, otherwise
django-q2's ORM broker, which is the database), and some worker's heartbeat is recent. A
failed check is named, never explained: an error's text can hold host names and users,
so it goes to the log.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import redis
from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from django_q.brokers import get_broker
from django_q.conf import Conf

from executions.models import WorkerHeartbeat

logger = logging.getLogger(__name__)


def _database() -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        return cursor.fetchone() == (1,)


def _broker() -> bool:
    # The broker the workers use, as django-q2 configured it from Q_CLUSTER.
    if Conf.ORM:
        # The ORM broker's own ping answers True without asking: read its queue instead.
        get_broker().queue_size()
        return True
    # A read timeout too: a Redis that accepts connections and never answers (stopped,
    # swapping) would otherwise hold this request, and a web worker, forever.
    client = redis.Redis.from_url(Conf.REDIS, socket_timeout=settings.REDIS_CONNECT_TIMEOUT_SECONDS)
    try:
        return bool(client.ping())
    finally:
        client.close()


def _workers() -> bool:
    return WorkerHeartbeat.objects.live().exists()


CHECKS: dict[str, Callable[[], bool]] = {"broker": _broker, "workers": _workers}


def _passes(name: str, check: Callable[[], bool]) -> bool:
    try:
        return check()
    except Exception:
        logger.warning("readiness check %r failed", name, exc_info=True)
        return False


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


@never_cache
@require_GET
def readyz(request: HttpRequest) -> JsonResponse:
    results = {"database": _passes("database", _database)}
    # Without the database, what is read from it fails too: not asked again, so that an
    # outage costs one wait for a connection rather than one per check.
    for name in ("broker", "workers"):
        needs_database = name == "workers" or Conf.ORM
        if needs_database and not results["database"]:
            results[name] = False
        else:
            results[name] = _passes(name, CHECKS[name])
    failed = [name for name, ok in results.items() if not ok]
    body = {
        "status": "fail" if failed else "ok",
        "checks": {name: "ok" if ok else "fail" for name, ok in results.items()},
        "broker": "database" if Conf.ORM else "redis",
        "failed": failed,
    }
    return JsonResponse(body, status=503 if failed else 200)
