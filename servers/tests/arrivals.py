"""What paramiko's transport hands to channels, in the order it arrived.

A pytest plugin (loaded from the root conftest) with one fixture, ``arrivals``. It records
below tsubame's own bookkeeping (servers.ssh.arrival wraps the handlers this one wraps), so
a test can compare what tsubame kept with what sshd actually sent. Comparing with the order
the script wrote is not a fair test: on a busy machine sshd reads a command's stdout pipe,
then its stderr pipe, and already sends lines written 1 ms apart out of order.
"""

from __future__ import annotations

import threading
from itertools import pairwise

import paramiko
import pytest
from paramiko.common import MSG_CHANNEL_DATA, MSG_CHANNEL_EXTENDED_DATA

from servers import ssh


class Pieces:
    """Output pieces with their streams, in the order they were handed over."""

    def __init__(self) -> None:
        self.pieces: list[tuple[ssh.Stream, bytes]] = []
        self._lock = threading.Lock()

    def __call__(self, stream: ssh.Stream, data: bytes) -> None:
        with self._lock:
            self.pieces.append((stream, data))

    def clear(self) -> None:
        with self._lock:
            self.pieces.clear()

    def lines(self) -> list[tuple[ssh.Stream, str]]:
        """Each line with the stream it came on; a line never spans two streams here."""
        joined: list[tuple[ssh.Stream, bytearray]] = []
        with self._lock:
            for stream, data in self.pieces:
                if joined and joined[-1][0] == stream:
                    joined[-1][1].extend(data)
                else:
                    joined.append((stream, bytearray(data)))
        return [(stream, line) for stream, data in joined for line in data.decode().splitlines()]


def stream_switches(lines: list[tuple[ssh.Stream, str]]) -> int:
    """How often consecutive lines change stream: how much an order test really interleaves."""
    return sum(before[0] != after[0] for before, after in pairwise(lines))


@pytest.fixture
def arrivals(monkeypatch: pytest.MonkeyPatch) -> Pieces:
    """Every channel's output as the transports of this process receive it from now on.

    Only transports created after the fixture see it: a transport takes the class's handler
    table when tsubame's session wraps it.
    """
    record = Pieces()
    table = dict(paramiko.Transport._channel_handler_table)
    feed, feed_extended = table[MSG_CHANNEL_DATA], table[MSG_CHANNEL_EXTENDED_DATA]

    def handle_data(channel: paramiko.Channel, message: paramiko.Message | bytes) -> None:
        # tsubame's wrapper above has already taken the bytes out of the message.
        data = message if isinstance(message, bytes) else message.get_binary()
        record("stdout", data)
        feed(channel, data)

    def handle_extended_data(channel: paramiko.Channel, message: paramiko.Message) -> None:
        start = message.packet.tell()
        message.get_int()  # the data type; only stderr (1) is ever sent
        record("stdout" if channel.combine_stderr else "stderr", message.get_binary())
        message.packet.seek(start)
        feed_extended(channel, message)

    monkeypatch.setattr(
        paramiko.Transport,
        "_channel_handler_table",
        table | {MSG_CHANNEL_DATA: handle_data, MSG_CHANNEL_EXTENDED_DATA: handle_extended_data},
    )
    return record
