"""The doorbell, not polling, brings a viewer what the worker has just stored."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator

from executions import runner
from executions.models import Status
from executions.tests.helpers import start
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
