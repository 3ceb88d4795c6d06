import logging

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import close_old_connections
from django_q.cluster import Cluster

from executions import services

logger = logging.getLogger(__name__)


class Command(BaseCommand):
    help = (
        "Run a django-q2 cluster (like qcluster) plus the reaper that marks executions of "
        "dead workers as lost and re-queues executions whose task went missing. Run as many "
        "as you like: reapers do not conflict."
    )

    def handle(self, *args: object, **options: object) -> None:
        cluster = Cluster()
        # start() forks the sentinel and returns once it runs; the cluster's signal
        # handlers stop it on SIGTERM/SIGINT, which ends the loop below.
        cluster.start()
        while cluster.sentinel.is_alive():
            try:
                services.reap_lost_executions()
                services.requeue_waiting_executions()
            except Exception:
                logger.exception("looking after executions failed")
            finally:
                close_old_connections()
            cluster.sentinel.join(settings.EXECUTION_REAP_EVERY_SECONDS)
