import logging
import threading

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand
from django.db import close_old_connections

from executions import services

logger = logging.getLogger(__name__)


def reap_forever(stop: threading.Event) -> None:
    while not stop.wait(settings.EXECUTION_REAP_EVERY_SECONDS):
        try:
            services.reap_lost_executions()
        except Exception:
            logger.exception("reaping lost executions failed")
        finally:
            close_old_connections()


class Command(BaseCommand):
    help = (
        "Run a django-q2 cluster (qcluster) plus the reaper that marks executions of dead "
        "workers as lost. Start as many as you like; the reapers do not conflict."
    )

    def handle(self, *args: object, **options: object) -> None:
        stop = threading.Event()
        reaper = threading.Thread(target=reap_forever, args=(stop,), name="reaper", daemon=True)
        reaper.start()
        try:
            call_command("qcluster")
        finally:
            stop.set()
