"""The remote side of a run: the wrapper command, and supervising its channel.

See the package docstring for why the wrapper is shaped the way it is.
"""

from __future__ import annotations

import re
import select
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import paramiko
from paramiko.common import MSG_CHANNEL_REQUEST

Stream = Literal["stdout", "stderr"]
Outcome = Literal["exited", "cancelled", "timed_out", "disconnected"]

READ_SIZE = 64 * 1024
SEND_SIZE = 32 * 1024  # paramiko's maximum packet size; larger writes are split anyway
# A background process that keeps stdout open would otherwise hold the run open forever.
EXIT_DRAIN_SECONDS = 2.0
# After the remote's grace period expires the watcher sends KILL; allow for latency on top.
KILL_MARGIN_SECONDS = 3.0
POLL_SECONDS = 0.1
INTERPRETER_PATTERN = r"/[A-Za-z0-9_./+-]+"
INTERPRETER = re.compile(INTERPRETER_PATTERN)


@dataclass(frozen=True)
class RunResult:
    outcome: Outcome
    exit_code: int | None
    signal: str | None = None


def wrapper_command(size: int, interpreter: str, grace: float) -> str:
    """The remote command; see the module docstring for why it is shaped like this."""
    if not INTERPRETER.fullmatch(interpreter):
        raise ValueError(f"interpreter must be an absolute path, got {interpreter!r}")
    grace = min(max(grace, 0.0), 3600.0)
    grace_text = str(int(grace)) if grace == int(grace) else f"{grace:.3f}"
    # One line, no single quote, no backslash: bash, zsh, fish and csh all pass it unchanged.
    steps = [
        "umask 077",
        "f=$(mktemp) || exit 125",
        'clean() { rm -f "$f"; }',
        f'head -c {size} >"$f"',
        # Fewer bytes means we hung up while sending: never run a truncated script.
        f'[ $(wc -c <"$f") -eq {size} ] || {{ clean; exit 125; }}',
        "exec 3<&0",
        # The watcher. `kill -0 $$`: if the wrapper already finished, this EOF is just the
        # channel closing after a normal exit and the script's daemons must live.
        '{ while read -r _; do :; done <&3; kill -0 $$ || exit; trap "" TERM; kill -TERM 0; '
        f"sleep {grace_text}; clean; kill -KILL 0; }} >/dev/null 2>&1 & w=$!",
        # Only now: dash drops a TERM that reaches a new subshell still carrying the parent's
        # trap, which made `kill $w` fail often under load. PIPE because sh dies writing
        # "Terminated" to a stderr whose channel is gone.
        'trap "clean; exit 143" TERM HUP PIPE',
        f'{interpreter} "$f" </dev/null 3<&-',
        "rc=$?",
        "kill $w 2>/dev/null",
        "clean",
        "exit $rc",
    ]
    return "exec /bin/sh -c '" + "; ".join(steps) + "'"


def supervise(
    channel: paramiko.Channel,
    script: memoryview,
    on_output: Callable[[Stream, bytes], None],
    stop: threading.Event,
    timeout: float | None,
    kill_grace: float,
) -> Outcome:
    """Feed the script, pump output, and stop the remote on cancel or timeout."""
    deadline = None if timeout is None else time.monotonic() + timeout
    outcome: Outcome = "exited"
    sent = 0
    give_up_at: float | None = None  # set once we asked the remote to stop
    drain_until: float | None = None  # set once the exit status arrived
    channel.settimeout(POLL_SECONDS)  # bounds send() while the remote's window is full
    wakeup = channel.fileno()  # readable when either stream has data
    while True:
        # Read before draining: data always arrives before EOF, so a channel that had ended
        # when this pass began has nothing left once both buffers come up empty.
        ended = channel.eof_received or channel.closed
        busy = False
        if channel.recv_ready():
            on_output("stdout", channel.recv(READ_SIZE))
            busy = True
        if channel.recv_stderr_ready():
            on_output("stderr", channel.recv_stderr(READ_SIZE))
            busy = True
        now = time.monotonic()
        if channel.exit_status >= 0 or channel.status_event.is_set():
            drain_until = drain_until or now + EXIT_DRAIN_SECONDS
            if (not busy and ended) or now >= drain_until:
                return outcome
        if give_up_at is None:
            if stop.is_set():
                outcome = "cancelled"
            elif deadline is not None and now >= deadline:
                outcome = "timed_out"
            if outcome != "exited":
                if not channel.closed:
                    channel.shutdown_write()  # stdin EOF: the remote watcher kills the group
                give_up_at = now + kill_grace + KILL_MARGIN_SECONDS
        elif now >= give_up_at:
            return outcome
        if give_up_at is None and sent < len(script):
            try:
                sent += channel.send(bytes(script[sent : sent + SEND_SIZE]))
            except TimeoutError:
                pass
            except OSError:
                sent = len(script)  # the channel is gone; the checks above will notice
            continue
        if busy:
            continue
        if channel.eof_received or channel.closed:
            # The wakeup pipe stays readable after EOF; wait for the status instead.
            channel.status_event.wait(POLL_SECONDS)
        else:
            select.select([wakeup], [], [], POLL_SECONDS)


def capture_exit_signals(transport: paramiko.Transport, signals: dict[int, str]) -> None:
    """Record "exit-signal" requests, which paramiko drops, by channel id.

    Without this a command killed by a signal looks like one that never reported anything.
    """
    table = dict(transport._channel_handler_table)
    handle_request = table[MSG_CHANNEL_REQUEST]

    def handle(channel: paramiko.Channel, message: paramiko.Message) -> None:
        start = message.packet.tell()
        if message.get_text() == "exit-signal":
            message.get_boolean()
            signals[channel.get_id()] = message.get_text()
            channel.status_event.set()
        message.packet.seek(start)
        handle_request(channel, message)

    transport._channel_handler_table = table | {MSG_CHANNEL_REQUEST: handle}
