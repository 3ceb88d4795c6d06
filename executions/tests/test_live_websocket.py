"""Live output over the WebSocket: replay, follow, resume (who may listen: test_live_access)."""

import base64
import json
from unittest import mock

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.db import DatabaseError

from executions import fanout, live, runner
from executions.consumers import CLOSE_SERVER_ERROR, MAX_MESSAGE_BYTES
from executions.models import Status
from executions.tests.helpers import start
from executions.tests.live_client import session_headers
from tsubame.asgi import build_application

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]

SCRIPT = "for i in $(seq 1 300); do echo line$i; echo warn$i >&2; done; sleep 0.3; echo done"


async def listen(path: str, headers, *, until_end: bool = True, timeout: float = 30):
    """Connect, gather messages until `end` (or the close), and return (accepted, messages)."""
    communicator = WebsocketCommunicator(build_application(), path, headers=headers)
    connected, code = await communicator.connect(timeout=10)
    messages = []
    if connected:
        while until_end:
            message = await communicator.receive_json_from(timeout=timeout)
            messages.append(message)
            if message["type"] == "end":
                break
        await communicator.disconnect()
    return connected, code, messages


def chunks_of(messages):
    return [chunk for m in messages if m["type"] == "output" for chunk in m["chunks"]]


def text(chunks, stream):
    return "".join(c["text"] for c in chunks if c["stream"] == stream)


def test_output_arrives_live_complete_and_in_order(make_server, make_job, superuser, in_background):
    servers = [make_server(), make_server()]
    execution = start(make_job(SCRIPT, servers))
    in_background(lambda: runner.run_execution(execution.pk))
    connected, _, messages = async_to_sync(listen)(
        f"/ws/executions/{execution.pk}/", session_headers(superuser)
    )
    assert connected
    chunks = chunks_of(messages)
    assert [c["seq"] for c in chunks] == list(range(len(chunks)))
    expected_out = "".join(f"line{i}\n" for i in range(1, 301)) + "done\n"
    expected_err = "".join(f"warn{i}\n" for i in range(1, 301))
    for host_run in execution.host_runs.all():
        mine = [c for c in chunks if c["host_run"] == host_run.pk]
        assert text(mine, "stdout") == expected_out
        assert text(mine, "stderr") == expected_err
    statuses = [m for m in messages if m["type"] == "status"]
    assert statuses[0]["execution"]["status"] in (Status.QUEUED, Status.RUNNING)
    final = statuses[-1]
    assert final["execution"]["status"] == Status.SUCCEEDED
    assert {r["exit_code"] for r in final["host_runs"]} == {0}
    assert messages[-1] == {"type": "end"}


def test_a_client_resumes_from_its_last_sequence_without_gaps(make_server, make_job, superuser):
    execution = start(make_job(SCRIPT, [make_server()]))
    runner.run_execution(execution.pk)
    headers = session_headers(superuser)
    _, _, first = async_to_sync(listen)(f"/ws/executions/{execution.pk}/", headers)
    everything = chunks_of(first)
    assert len(everything) > 1
    middle = everything[len(everything) // 2]["seq"]
    _, _, second = async_to_sync(listen)(f"/ws/executions/{execution.pk}/?after={middle}", headers)
    assert chunks_of(second) == everything[middle + 1 :]


def test_binary_output_reaches_the_client_losslessly(make_server, make_job, superuser):
    import base64

    execution = start(make_job("printf 'ok \\377\\376\\n'", [make_server()]))
    runner.run_execution(execution.pk)
    _, _, messages = async_to_sync(listen)(
        f"/ws/executions/{execution.pk}/", session_headers(superuser)
    )
    (chunk,) = chunks_of(messages)
    assert base64.b64decode(chunk["b64"]) == b"ok \xff\xfe\n"
    assert chunk["text"] == "ok \ufffd\ufffd\n"


async def _listen_then_break(path, headers, execution_id):
    communicator = WebsocketCommunicator(build_application(), path, headers=headers)
    connected, _ = await communicator.connect(timeout=10)
    assert connected
    await communicator.send_to(text_data="this is not JSON")  # ignored, not a crash
    first = await communicator.receive_json_from(timeout=10)
    # Reading fails from now on, as in a database outage; the ring makes the feed read now.
    with mock.patch.object(fanout, "read_new", side_effect=DatabaseError("outage")):
        await get_channel_layer().group_send(live.group_name(execution_id), live.CHANGED)
        closed = await communicator.receive_output(timeout=10)
    await communicator.disconnect()
    return first, closed


def test_a_broken_stream_is_closed_so_the_client_reconnects(make_server, make_job, superuser):
    execution = start(make_job("echo hi", [make_server()]))
    first, closed = async_to_sync(_listen_then_break)(
        f"/ws/executions/{execution.pk}/", session_headers(superuser), execution.pk
    )
    assert first["type"] == "status"
    assert closed == {"type": "websocket.close", "code": CLOSE_SERVER_ERROR}


async def _frames(path, headers):
    communicator = WebsocketCommunicator(build_application(), path, headers=headers)
    await communicator.connect(timeout=10)
    frames = []
    while True:
        frame = (await communicator.receive_output(timeout=30))["text"]
        frames.append(frame)
        if '"type": "end"' in frame:
            break
    await communicator.disconnect()
    return frames


def test_every_frame_stays_under_the_servers_message_limit(make_server, make_job, superuser):
    # Random bytes are the worst case: each invalid byte becomes a replacement character in
    # "text" and the chunk travels once more in base64; daphne drops frames over 1 MiB.
    execution = start(make_job("head -c 3000000 /dev/urandom", [make_server()]))
    runner.run_execution(execution.pk)
    frames = async_to_sync(_frames)(f"/ws/executions/{execution.pk}/", session_headers(superuser))
    assert max(len(frame.encode()) for frame in frames) <= MAX_MESSAGE_BYTES
    chunks = [c for f in frames if '"output"' in f[:20] for c in json.loads(f)["chunks"]]
    assert [c["seq"] for c in chunks] == list(range(len(chunks)))
    assert (
        sum(
            len(base64.b64decode(c["b64"])) if "b64" in c else len(c["text"].encode())
            for c in chunks
        )
        == 3000000
    )
