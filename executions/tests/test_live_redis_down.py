"""Live output while the channel layer's Redis goes away and comes back.

The database is the truth and the layer only a doorbell: without Redis the sockets stay open,
new ones are accepted, and output keeps coming from the database; once Redis is back the
execution's feed (one per process, whatever the number of sockets) joins its group again and
the doorbell works without any polling.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from asgiref.sync import async_to_sync

from executions import live, runner
from executions.tests.helpers import start
from executions.tests.live_client import GATED_SCRIPT, LiveClient, go, session_headers

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(180)]

REDIS_SERVER = shutil.which("redis-server")


class RedisServer:
    """A redis-server of the test's own on a free port, to kill and start again on that port."""

    def __init__(self, directory: Path) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.directory = directory
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        args = [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1"]
        # Nothing saved: a restarted server has forgotten every group, as after a crash.
        args += ["--save", "", "--appendonly", "no", "--dir", str(self.directory)]
        with (self.directory / "redis.log").open("ab") as log:
            self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while True:
            try:
                redis.Redis(port=self.port, socket_timeout=1).ping()
                return
            except redis.ConnectionError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise
                time.sleep(0.02)

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    def group_size(self, group: str) -> int:
        return redis.Redis(port=self.port, socket_timeout=1).zcard(f"asgi:group:{group}")


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    if REDIS_SERVER is None:
        pytest.fail("redis-server is missing: apt-get install redis-server", pytrace=False)
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.kill()


@pytest.fixture
def redis_layer(settings, redis_server: RedisServer) -> RedisServer:
    """channels-redis on the test's own Redis, configured as in production.

    Changing CHANNEL_LAYERS makes channels drop the layers it built for the old setting.
    """
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [{"address": redis_server.url, "socket_timeout": 30}]},
        }
    }
    # No polling to speak of: while Redis is up only the doorbell can deliver promptly.
    settings.LIVE_POLL_SECONDS = 3600
    settings.LIVE_FALLBACK_POLL_SECONDS = 0.2
    return redis_server


async def _until(condition, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.05)


def test_live_output_keeps_flowing_without_redis_and_the_doorbell_returns_with_it(
    redis_layer, settings, make_server, make_job, superuser, shared_dir, in_background
):
    execution = start(make_job(GATED_SCRIPT.format(dir=shared_dir), [make_server()]))
    group = live.group_name(execution.pk)
    headers = session_headers(superuser)
    in_background(lambda: runner.run_execution(execution.pk))

    async def scenario() -> None:
        early = LiveClient(execution.pk, headers)
        await early.open()
        await early.wait_for("step1\n")  # rung through Redis: polling is an hour away

        redis_layer.kill()
        go(shared_dir, 1)
        await early.wait_for("step2\n")  # the open socket reads the database instead

        during = LiveClient(execution.pk, headers)
        await during.open()  # accepted while Redis is down
        await during.wait_for("step1\nstep2\n")
        go(shared_dir, 2)
        await early.wait_for("step3\n")
        await during.wait_for("step3\n")

        redis_layer.start()  # the same port, every group forgotten
        # Both sockets follow one feed, which has one place in the group.
        await _until(lambda: redis_layer.group_size(group) == 1, "the sockets' feed to rejoin")
        # From here on, only a ring can deliver promptly.
        settings.LIVE_FALLBACK_POLL_SECONDS = 3600
        after = LiveClient(execution.pk, headers)
        await after.open()
        await after.wait_for("step3\n")
        assert redis_layer.group_size(group) == 1  # the new socket joined the feed
        go(shared_dir, 3)
        for client in (early, during, after):
            await client.wait_for("step4\n")
        go(shared_dir, 4)
        for client in (early, during, after):
            await client.close()

    try:
        async_to_sync(scenario)()
    finally:
        for step in (1, 2, 3, 4):
            go(shared_dir, step)  # let the script end, whatever happened
