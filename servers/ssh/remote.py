"""The remote side of a run: the wrapper command, and supervising its channel.

See the package docstring for why the wrapper is shaped the way it is.
"""

from __future__ import annotations

import contextlib
import re
import select
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import paramiko
from paramiko.common import MSG_CHANNEL_REQUEST

if TYPE_CHECKING:
    from servers.ssh.arrival import ArrivalOrder

Stream = Literal["stdout", "stderr"]
Outcome = Literal["exited", "cancelled", "timed_out", "disconnected"]

READ_SIZE = 64 * 1024
SEND_SIZE = 32 * 1024  # paramiko's maximum packet size; larger writes are split anyway
# A background process that keeps stdout open would otherwise hold the run open forever.
EXIT_DRAIN_SECONDS = 2.0
# After the remote's grace period expires the watcher sends KILL; allow for latency on top.
KILL_MARGIN_SECONDS = 3.0
# The remote stops the script after this many heartbeat intervals without one.
MISSED_HEARTBEATS = 3
MIN_HEARTBEAT_SECONDS = 0.1
POLL_SECONDS = 0.1
# What the remote watcher takes as "stop now"; a heartbeat is an empty line.
STOP_LINE = b"stop\n"
INTERPRETER_PATTERN = r"/[A-Za-z0-9_./+-]+"
INTERPRETER = re.compile(INTERPRETER_PATTERN)
ENVIRONMENT_NAME = re.compile(r"[A-Z_][A-Z0-9_]*")
# Spelled out: under some locales bash's [A-Z] also matches lower-case letters.
_UPPER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


@dataclass(frozen=True)
class RunResult:
    outcome: Outcome
    exit_code: int | None
    signal: str | None = None


def environment_block(environment: Mapping[str, str]) -> bytes:
    """The variables as the wrapper reads them from stdin, ahead of the script: per variable a
    line `NAME COUNT`, then the COUNT lines of its value split at its newlines (so "" is one
    empty line and "a\\n" two lines); an empty line ends the block.

    Raises ValueError for a name the wrapper would refuse or a value it cannot carry; the
    message never shows a value, which may be a secret."""
    parts = []
    for name, value in environment.items():
        if not ENVIRONMENT_NAME.fullmatch(name):
            raise ValueError(f"{name!r} is not an environment variable name ([A-Z_][A-Z0-9_]*)")
        # The shell keeps its variables as C strings: a NUL would cut the value short.
        if "\0" in value:
            raise ValueError(f"the value of {name} contains a NUL character")
        try:
            lines = value.encode().split(b"\n")
        except UnicodeEncodeError:
            raise ValueError(f"the value of {name} is not encodable as UTF-8") from None
        parts.append(f"{name} {len(lines)}\n".encode())
        parts.extend(line + b"\n" for line in lines)
    parts.append(b"\n")
    return b"".join(parts)


def wrapper_command(size: int, interpreter: str, grace: float, heartbeat: float) -> str:
    """The remote command; see the package docstring for why it is shaped like this.

    It reads an environment block (environment_block) and then `size` bytes of script from
    stdin. Nothing about the variables is in it, not even how many there are."""
    if not INTERPRETER.fullmatch(interpreter):
        raise ValueError(f"interpreter must be an absolute path, got {interpreter!r}")
    grace_text, beat_text = _seconds(grace, 0.0), _seconds(heartbeat, MIN_HEARTBEAT_SECONDS)
    # One line, no single quote, no backslash: bash, zsh, fish and csh all pass it unchanged.
    # No "!" either: csh expands history even inside single quotes, so no [!...] patterns.
    steps = [
        "umask 077",
        # One private directory for the script and the heartbeat mark: every process the
        # wrapper starts costs the remote about a millisecond, times the hosts of a fan-out.
        "d=$(mktemp -d) || exit 125",
        "f=$d/script; h=$d/beat",
        'clean() { rm -rf "$d"; }',
        # A terminal hangs up when the channel closes, e.g. on a cancel while the script
        # was still arriving: leave nothing behind.
        'trap "clean; exit 129" HUP',
        # Input that is malformed, or cut short because we hung up while sending it.
        "refuse() { clean; exit 125; }",
        # The environment block comes first and is read by `read` itself, which takes a pipe
        # byte by byte: no helper process whose arguments `ps` shows, not even a value's
        # length; and nothing read past the block, unlike busybox's `head -c`.
        # The values wait in the positional parameters, not exported: the wrapper's own
        # commands (sleep, rm) must neither show them in their environment nor obey them.
        "nl=; set --",
        # Per variable `NAME COUNT`, then COUNT lines joined back with newlines, until an
        # empty line. The name is checked one character at a time, as there is no [!...].
        'while :; do IFS= read -r l || refuse; [ -n "$l" ] || break',
        "n=${l% *}; k=${l##* }",
        f"case $n in [{_UPPER}_]*) ;; *) refuse;; esac",
        'r=${n#?}; while [ -n "$r" ]; do '
        f"case $r in [{_UPPER}0123456789_]*) r=${{r#?}};; *) refuse;; esac; done",
        '[ "$k" -gt 0 ] 2>/dev/null || refuse',
        "IFS= read -r v || refuse",
        # The newline that joins a value's lines, made (by a subshell) only when needed.
        '[ $k -gt 1 ] && [ -z "$nl" ] && { nl=$(echo; echo x); nl=${nl%x}; }',
        "while [ $k -gt 1 ]; do IFS= read -r l || refuse; v=$v$nl$l; k=$((k - 1)); done",
        'set -- "$@" "$n" "$v"',
        "done",
        f'head -c {size} >"$f"',
        # Fewer bytes means we hung up while sending: never run a truncated script.
        f'[ $(wc -c <"$f") -eq {size} ] || refuse',
        "exec 3<&0",
        # Stops the script's process group. `kill -0 $$`: if the wrapper already finished,
        # the client just went away after a normal exit and the script's daemons must live.
        # HUP too: under a terminal the whole group gets one when the wrapper exits.
        'stop_all() { kill -0 $$ || exit; trap "" TERM HUP; kill -TERM 0; '
        f"sleep {grace_text}; clean; kill -KILL 0; }}",
        # The listener marks $h on every heartbeat (an empty line) and stops the script at
        # any other line or at stdin EOF: we cancelled, the channel closed, or the
        # connection was reset.
        '{ while read -r l && [ -z "$l" ]; do echo >"$h"; done <&3; stop_all; } '
        ">/dev/null 2>&1 & w=$!",
        # The clock catches the silent death that EOF never reports (a network partition,
        # a host that lost power): MISSED_HEARTBEATS ticks in a row with $h unmarked. It
        # sleeps in the background so that `kill $t` below can take its `sleep` along.
        "tock() { kill $s; exit; }",
        f"{{ trap tock TERM; m=0; while [ $m -lt {MISSED_HEARTBEATS} ]; do "
        f"sleep {beat_text} & s=$!; wait $s; "
        'if [ -s "$h" ]; then m=0; : >"$h"; else m=$((m + 1)); fi; done; stop_all; } '
        "</dev/null >/dev/null 2>&1 3<&- & t=$!",
        # Only now: dash drops a TERM that reaches a new subshell still carrying the parent's
        # trap, which made `kill $w` fail often under load. PIPE because sh dies writing
        # "Terminated" to a stderr whose channel is gone.
        'trap "clean; exit 143" TERM HUP PIPE',
        # Exported only in the process that becomes the interpreter.
        '(while [ $# -gt 0 ]; do export "$1=$2" || exit 125; shift 2; done; '
        f'exec {interpreter} "$f") </dev/null 3<&-',
        "rc=$?",
        "kill $w $t 2>/dev/null",
        "clean",
        "exit $rc",
    ]
    return "exec /bin/sh -c '" + "; ".join(steps) + "'"


def outlives_silence(heartbeat: float, grace: float) -> float:
    """The longest a script may still run after the remote heard the last heartbeat: the
    clock's phase adds up to one interval to the missed ones, then TERM, grace and KILL."""
    beat, grace = _clamp(heartbeat, MIN_HEARTBEAT_SECONDS), _clamp(grace, 0.0)
    return (MISSED_HEARTBEATS + 1) * beat + grace + KILL_MARGIN_SECONDS


def _clamp(seconds: float, least: float) -> float:
    """The duration both sides use: the remote's clock and our heartbeat must agree."""
    return min(max(seconds, least), 3600.0)


def _seconds(value: float, least: float) -> str:
    """A duration for `sleep`: integral when it can be, for sleeps that only take integers."""
    value = _clamp(value, least)
    return str(int(value)) if value == int(value) else f"{value:.3f}"


class Heartbeat:
    """Sends the remote listener a line every `interval` seconds from a thread of its own, so
    that an output callback applying backpressure never looks like a dead client."""

    def __init__(self, channel: paramiko.Channel, interval: float) -> None:
        self._channel = channel
        self._interval = _clamp(interval, MIN_HEARTBEAT_SECONDS)
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="ssh-heartbeat", daemon=True)

    def start(self) -> None:
        """Start beating, once; never again after stop()."""
        if self._thread.ident is None and not self._stopped.is_set():
            self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        if self._thread.is_alive():
            self._thread.join()

    def _beat(self) -> None:
        while not self._stopped.wait(self._interval):
            try:
                self._channel.send(b"\n")
            except TimeoutError:
                pass  # the remote is not reading stdin right now; the next beat may get through
            except (OSError, EOFError, paramiko.SSHException):
                return  # the channel or the connection is gone: nobody left to tell


def supervise(
    channel: paramiko.Channel,
    order: ArrivalOrder,
    stdin: memoryview,
    on_output: Callable[[Stream, bytes], None],
    stop: threading.Event,
    timeout: float | None,
    kill_grace: float,
    beats: Heartbeat,
) -> Outcome:
    """Feed `stdin` (the environment block and the script), start the heartbeat, pump output,
    and stop the remote on cancel or timeout. The caller stops `beats` when the run is over."""
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
        piece = order.read(channel, READ_SIZE)
        busy = piece is not None
        if piece is not None:
            on_output(*piece)
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
                beats.stop()
                if sent < len(stdin):
                    # The wrapper never runs on partial input: closing the channel ends it.
                    return outcome
                _ask_to_stop(channel)
                give_up_at = now + kill_grace + KILL_MARGIN_SECONDS
        elif now >= give_up_at:
            return outcome
        if give_up_at is None and sent < len(stdin):
            try:
                sent += channel.send(bytes(stdin[sent : sent + SEND_SIZE]))
            except TimeoutError:
                pass
            except OSError:
                sent = len(stdin)  # the channel is gone; the checks above will notice
            continue
        if give_up_at is None:
            beats.start()  # only now: a heartbeat inside the input would corrupt it
        if busy:
            continue
        if channel.eof_received or channel.closed:
            # The wakeup pipe stays readable after EOF; wait for the status instead.
            channel.status_event.wait(POLL_SECONDS)
        else:
            select.select([wakeup], [], [], POLL_SECONDS)


def _ask_to_stop(channel: paramiko.Channel) -> None:
    """Make the remote watcher stop the script's process group: a stop line, then stdin EOF.

    Either one is enough without a terminal; with one, sshd does not pass EOF on to the
    terminal, so the line is what the watcher hears (and the hangup when the channel closes,
    if even the line could not be sent)."""
    if channel.closed:
        return
    # If the line cannot go, the EOF below or the hangup once we close still gets there.
    with contextlib.suppress(TimeoutError, OSError, EOFError, paramiko.SSHException):
        channel.send(STOP_LINE)
    channel.shutdown_write()


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
