"""The order in which a channel's stdout and stderr arrive, kept across both streams.

paramiko files each stream into a buffer of its own, so reading the two buffers apart loses
how they interleave. The transport's handlers for CHANNEL_DATA and CHANNEL_EXTENDED_DATA see
every packet in arrival order: we note its stream and size, then let paramiko file it, and
`ArrivalOrder.read` takes exactly those sizes from the matching buffer, in that order.
Reading still goes through `Channel.recv` / `recv_stderr`, so the channel window grows back
as bytes are consumed, exactly as before: flow control and the shared 2 MiB window of both
streams are unchanged.
"""

from __future__ import annotations

import threading
from collections import deque

import paramiko
from paramiko.common import MSG_CHANNEL_DATA, MSG_CHANNEL_EXTENDED_DATA

from servers.ssh.remote import Stream

# SSH_EXTENDED_DATA_STDERR, the only extended data type there is; paramiko drops others.
_STDERR = 1


class ArrivalOrder:
    """The streams and sizes of a channel's arrived, unread output, oldest first.

    Consecutive pieces of one stream are merged, so this holds one number per switch between
    streams that the reader has not caught up with: bounded by the channel window.
    """

    def __init__(self) -> None:
        # Sizes, positive for stdout and negative for stderr: one small int per entry.
        self._sizes: deque[int] = deque()
        self._lock = threading.Lock()

    def arrived(self, stream: Stream, size: int) -> None:
        """Called by the transport thread just before `size` bytes go into `stream`'s buffer.

        Before, not after: the reader wakes when the bytes land, and must then find them noted.
        """
        if size == 0:
            return
        signed = size if stream == "stdout" else -size
        with self._lock:
            if self._sizes and (self._sizes[-1] > 0) == (signed > 0):
                self._sizes[-1] += signed
            else:
                self._sizes.append(signed)

    def read(self, channel: paramiko.Channel, limit: int) -> tuple[Stream, bytes] | None:
        """The oldest unread piece, at most `limit` bytes, or None if nothing is ready.

        One reader per channel. A piece may be noted and not in its buffer yet: then nothing
        is ready, and the channel's wakeup pipe turns readable once it is.
        """
        with self._lock:
            if not self._sizes:
                return None
            head = self._sizes[0]
        size = min(abs(head), limit)
        if head > 0:
            if not channel.recv_ready():
                return None
            stream: Stream = "stdout"
            data = channel.recv(size)  # returns at once: the buffer is not empty
        else:
            if not channel.recv_stderr_ready():
                return None
            stream = "stderr"
            data = channel.recv_stderr(size)
        with self._lock:
            # The transport thread may have merged more of this stream into the head meanwhile.
            self._sizes[0] -= len(data) if head > 0 else -len(data)
            if self._sizes[0] == 0:
                self._sizes.popleft()
        return stream, data


def record_arrival_order(transport: paramiko.Transport, orders: dict[int, ArrivalOrder]) -> None:
    """Note, for every channel id in `orders`, the order its output arrives in."""
    table = dict(transport._channel_handler_table)
    feed, feed_extended = table[MSG_CHANNEL_DATA], table[MSG_CHANNEL_EXTENDED_DATA]

    def handle_data(channel: paramiko.Channel, message: paramiko.Message) -> None:
        data = message.get_binary()
        order = orders.get(channel.get_id())
        if order is not None:
            order.arrived("stdout", len(data))
        feed(channel, data)  # Channel._feed takes the bytes themselves too

    def handle_extended_data(channel: paramiko.Channel, message: paramiko.Message) -> None:
        start = message.packet.tell()
        code, data = message.get_int(), message.get_binary()  # exactly what paramiko files
        message.packet.seek(start)
        order = orders.get(channel.get_id())
        if order is not None and code == _STDERR:
            order.arrived("stdout" if channel.combine_stderr else "stderr", len(data))
        feed_extended(channel, message)

    transport._channel_handler_table = table | {
        MSG_CHANNEL_DATA: handle_data,
        MSG_CHANNEL_EXTENDED_DATA: handle_extended_data,
    }
