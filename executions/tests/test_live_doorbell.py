"""The doorbell, not polling, brings a viewer what the worker has just stored."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

import pytest
from asgiref.sync import async_to_sync
from channels.layers import InMemoryChannelLayer
from channels.testing import WebsocketCommunicator

from executions import runner
from executions.models import Status
from executions.tests.helpers import output, start, wait_until
from executions.tests.test_live_websocket import chunks_of, session_headers, text
from tsubame.asgi import build_application

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]

# Far longer than the test may take: only a ring can wake the consumer in time.
NO_POLLING_SECONDS = 3600.0
PROMPTLY_SECONDS = 15.0


async def keep_loop_awake() -> None:
    # The in-memory layer is not thread-safe: a ring from the worker's thread wakes this
    # loop's consumer only once the loop next runs. In production the worker is another
    # process and rings through Redis; here a short tick stands in for Redis's socket.
    while True:
        await asyncio.sleep(0.02)


async def watch_a_run(path: str, headers, start_the_run: Callable[[], object]) -> list[dict]:
    communicator = WebsocketCommunicator(build_application(), path, headers=headers)
    connected, _ = await communicator.connect(timeout=10)
    assert connected
    ticker = asyncio.create_task(keep_loop_awake())
    try:
        messages = [await communicator.receive_json_from(timeout=10)]
        assert messages[0]["execution"]["status"] == Status.QUEUED
        start_the_run()  # only now: everything after this must come by the doorbell
        while messages[-1]["type"] != "end":
            messages.append(await communicator.receive_json_from(timeout=PROMPTLY_SECONDS))
    finally:
        ticker.cancel()
        await communicator.disconnect()
    return messages


def test_a_viewer_is_told_of_new_output_and_the_end_without_polling(
    make_server, make_job, superuser, settings, in_background
):
    settings.LIVE_POLL_SECONDS = NO_POLLING_SECONDS
    execution = start(make_job("echo one; sleep 0.3; echo two >&2", [make_server()]))
    messages = async_to_sync(watch_a_run)(
        f"/ws/executions/{execution.pk}/",
        session_headers(superuser),
        lambda: in_background(lambda: runner.run_execution(execution.pk)),
    )
    chunks = chunks_of(messages)
    assert text(chunks, "stdout") == "one\n"
    assert text(chunks, "stderr") == "two\n"
    final = [m for m in messages if m["type"] == "status"][-1]
    assert final["execution"]["status"] == Status.SUCCEEDED


class StallingLayer(InMemoryChannelLayer):
    """A channel layer that hangs on its second send until released, as a stalled Redis does.

    The first send is the claim's ring, from the run's own thread; the second is the first
    ring for what the output writer committed.
    """

    sends: list[str] = []
    released = threading.Event()

    async def group_send(self, group: str, message: dict) -> None:
        StallingLayer.sends.append(group)
        if len(StallingLayer.sends) == 2:
            StallingLayer.released.wait(60)
        await super().group_send(group, message)


def test_a_stalled_channel_layer_holds_up_neither_output_nor_the_run(
    make_server, make_job, settings, in_background
):
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": f"{__name__}.StallingLayer"}}
    StallingLayer.sends.clear()
    StallingLayer.released.clear()
    execution = start(make_job("echo hi", [make_server() for _ in range(5)], max_parallel=5))
    try:
        worker = in_background(lambda: runner.run_execution(execution.pk))
        worker.join(60)
        assert not worker.is_alive(), "the run waited for the channel layer"
    finally:
        StallingLayer.released.set()
    execution.refresh_from_db()
    assert (execution.status, execution.summary) == (Status.SUCCEEDED, "5 succeeded")
    assert output(execution) == b"hi\n" * 5
    # 15 commits (5 starts, 5 outputs, 5 ends) rang while the layer hung: they became one
    # ring after it, beside the claim's, the hung one and the finish's.
    wait_until(lambda: not ringers_of(execution.pk), 30, "the doorbell to ring what it owes")
    assert 3 <= len(StallingLayer.sends) <= 4, StallingLayer.sends


def ringers_of(execution_id: int) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == f"ringer-{execution_id}"]
