"""Many viewers of one execution share one reader of the database (executions/fanout.py).

The output here is stored by the test itself and rung in the test's own event loop, with
polling an hour away: each ring makes exactly the reads it causes, so what the database is
asked can be counted.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.db import connection
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.signals import connection_created
from django.utils import timezone

from executions import fanout, live
from executions.models import Execution, LogChunk, Status
from executions.tests.helpers import start
from executions.tests.live_client import LiveClient, session_headers
from jobs.models import Job
from tsubame.asgi import build_application

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]

NO_POLLING_SECONDS = 3600.0


@pytest.fixture(autouse=True)
def doorbell_only(settings: Any) -> None:
    settings.LIVE_POLL_SECONDS = NO_POLLING_SECONDS
    settings.LIVE_ACCESS_RECHECK_SECONDS = NO_POLLING_SECONDS


@contextmanager
def counted_reads() -> Iterator[list[str]]:
    """The SELECTs that any thread runs meanwhile (the feeds read on threads of their own)."""
    selects: list[str] = []
    hooked: list[BaseDatabaseWrapper] = []

    def count(execute: Callable[..., Any], sql: str, *args: Any) -> Any:
        if sql.lstrip().upper().startswith("SELECT"):
            selects.append(sql)
        return execute(sql, *args)

    def hook(connection: BaseDatabaseWrapper, **kwargs: Any) -> None:
        if count not in connection.execute_wrappers:
            connection.execute_wrappers.append(count)
            hooked.append(connection)

    connection_created.connect(hook)
    hook(connection)  # this thread's, which may be open already
    try:
        yield selects
    finally:
        connection_created.disconnect(hook)
        for wrapper in hooked:
            wrapper.execute_wrappers.remove(count)


@dataclass
class Run:
    """A queued execution on one server, whose output the test stores itself."""

    pk: int
    host_run_id: int

    @classmethod
    def start(cls, make_job: Callable[..., Job], make_server: Callable[..., Any]) -> Run:
        execution = start(make_job("true", [make_server()]))
        return cls(execution.pk, execution.host_runs.get().pk)

    def store(self, seq: int, text: str) -> None:
        LogChunk.objects.create(
            execution_id=self.pk,
            host_run_id=self.host_run_id,
            seq=seq,
            stream=LogChunk.Stream.STDOUT,
            data=text.encode(),
            created_at=timezone.now(),
        )

    def finish(self) -> None:
        Execution.objects.filter(pk=self.pk).update(
            status=Status.SUCCEEDED, finished_at=timezone.now()
        )

    async def ring(self) -> None:
        await get_channel_layer().group_send(live.group_name(self.pk), live.CHANGED)


async def joined(clients: list[LiveClient]) -> None:
    """Open each client and wait for its first status: it follows the feed from then on."""
    for client in clients:
        await client.open()
        while not client.messages or client.messages[-1]["type"] != "status":
            await client.receive(timeout=10)


def test_many_viewers_cost_the_database_what_one_viewer_does(make_server, make_job, superuser):
    headers = session_headers(superuser)
    alone, crowded = Run.start(make_job, make_server), Run.start(make_job, make_server)

    async def follow(run: Run, clients: list[LiveClient], seq: int) -> None:
        text = f"line{seq}\n"
        await database_sync_to_async(run.store)(seq, text)
        await run.ring()
        for client in clients:
            await client.wait_for(text)

    async def reads_while_following(run: Run, viewers: int, selects: list[str]) -> int:
        clients = [LiveClient(run.pk, headers) for _ in range(viewers)]
        await joined(clients)
        await follow(run, clients, 0)  # the feed's first join of the layer may add a read
        before = len(selects)
        for seq in range(1, 6):
            await follow(run, clients, seq)
        counted = len(selects) - before
        for client in clients:
            await client.close()
        return counted

    async def scenario(selects: list[str]) -> tuple[int, int]:
        return (
            await reads_while_following(alone, 1, selects),
            await reads_while_following(crowded, 8, selects),
        )

    with counted_reads() as selects:
        one, eight = async_to_sync(scenario)(selects)
    # Each ring costs one read of the status and the new chunks, whoever watches. A read the
    # first join of the layer caused may still land in the count (the status and the chunk
    # sizes: 3 queries), but never one per viewer.
    assert one > 0
    assert eight <= one + 3, (one, eight)


class StalledCommunicator(WebsocketCommunicator):
    """A client whose socket buffer is full: the server's send() waits until it reads."""

    @property
    def output_queue(self) -> asyncio.Queue[dict[str, Any]]:
        if self._output_queue is None:
            self._output_queue = asyncio.Queue(maxsize=2)
        return self._output_queue


def buffered_bytes(execution_id: int) -> list[int]:
    feed = fanout.feeds().get(execution_id)
    return [] if feed is None else [s.pending_bytes for s in feed.subscriptions]


def test_a_stalled_viewer_holds_bounded_memory_and_then_gets_everything_once(
    make_server, make_job, superuser, settings
):
    settings.LIVE_VIEWER_BUFFER_BYTES = 64 * 1024
    run = Run.start(make_job, make_server)
    headers = session_headers(superuser)
    # 40 batches of 8 KiB: five times what a viewer may have waiting.
    text = [f"{n:05}" + "x" * 8185 + "\n" for n in range(40)]

    async def scenario() -> tuple[list[dict[str, Any]], int]:
        brisk = LiveClient(run.pk, headers)
        await joined([brisk])
        stalled = StalledCommunicator(
            build_application(), f"/ws/executions/{run.pk}/", headers=headers
        )
        assert (await stalled.connect(timeout=10))[0]
        first = await stalled.receive_json_from(timeout=10)
        assert first["type"] == "status"
        most = 0
        for seq, chunk in enumerate(text):
            await database_sync_to_async(run.store)(seq, chunk)
            await run.ring()
            await brisk.wait_for(chunk)  # the feed goes on for the viewers that keep up
            most = max([most, *buffered_bytes(run.pk)])
        await database_sync_to_async(run.finish)()
        await run.ring()
        received = [first]
        while received[-1]["type"] != "end":  # the stalled client reads again
            received.append(await stalled.receive_json_from(timeout=30))
        await stalled.disconnect()
        await brisk.wait_for(text[-1])
        assert brisk.text == "".join(text)
        await brisk.close()
        return received, most

    received, most = async_to_sync(scenario)()
    assert most <= settings.LIVE_VIEWER_BUFFER_BYTES
    chunks = [c for m in received if m["type"] == "output" for c in m["chunks"]]
    assert [c["seq"] for c in chunks] == list(range(len(text)))
    assert "".join(c["text"] for c in chunks) == "".join(text)
    assert [m["type"] for m in received[-2:]] == ["status", "end"]


def test_viewers_get_everything_when_the_channel_layer_is_down(
    make_server, make_job, superuser, settings
):
    # No layer to ring through: the feed finds the output by polling.
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [{"address": "redis://127.0.0.1:9/0", "socket_timeout": 1}]},
        }
    }
    settings.LIVE_FALLBACK_POLL_SECONDS = 0.05
    run = Run.start(make_job, make_server)
    headers = session_headers(superuser)
    expected = [f"line{n}\n" for n in range(5)]

    async def scenario() -> list[LiveClient]:
        clients = [LiveClient(run.pk, headers) for _ in range(3)]
        await joined(clients)
        for seq, text in enumerate(expected):
            await database_sync_to_async(run.store)(seq, text)
        await database_sync_to_async(run.finish)()
        for client in clients:
            while client.messages[-1]["type"] != "end":
                await client.receive(timeout=30)
            await client.close()
        return clients

    for client in async_to_sync(scenario)():
        assert client.text == "".join(expected)
        chunks = [c for m in client.messages if m["type"] == "output" for c in m["chunks"]]
        assert [c["seq"] for c in chunks] == list(range(len(expected)))


def test_a_viewer_that_resumes_ahead_of_the_feed_gets_only_what_follows(
    make_server, make_job, superuser
):
    run = Run.start(make_job, make_server)
    headers = session_headers(superuser)

    async def scenario() -> LiveClient:
        watching = LiveClient(run.pk, headers)
        await joined([watching])  # the feed starts before any output
        ahead = LiveClient(run.pk, headers, query="after=2")
        await joined([ahead])
        for seq in range(5):
            await database_sync_to_async(run.store)(seq, f"line{seq}\n")
        await run.ring()
        await watching.wait_for("line4\n")
        await ahead.wait_for("line4\n")
        for client in (watching, ahead):
            await client.close()
        return ahead

    ahead = async_to_sync(scenario)()
    assert ahead.text == "line3\nline4\n"
