"""An authenticated connection that runs scripts, and the connection check built on it."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import paramiko

from servers.ssh.arrival import ArrivalOrder, record_arrival_order
from servers.ssh.errors import ConnectTimeout, ProtocolError, SSHError
from servers.ssh.remote import (
    Heartbeat,
    RunResult,
    Stream,
    capture_exit_signals,
    environment_block,
    outlives_silence,
    supervise,
    wrapper_command,
)
from servers.ssh.terminal import request_terminal
from servers.ssh.transport import Target, give_up_on_silent_peer_after, open_transport


@dataclass(frozen=True)
class ConnectionCheck:
    status: str
    latency_ms: float | None
    message: str


def connect(target: Target) -> Session:
    return Session(open_transport(target.host, target.port, target.connect_timeout, target), target)


def check_connection(target: Target) -> ConnectionCheck:
    """Connect, authenticate and run `true` the way scripts run; latency covers all of it."""
    started = time.monotonic()
    try:
        with connect(target) as session:
            result = session.run(
                b"true", "/bin/sh", _discard, stop=threading.Event(), timeout=target.connect_timeout
            )
    except SSHError as exc:
        return ConnectionCheck(exc.kind, None, str(exc))
    latency_ms = round((time.monotonic() - started) * 1000, 1)
    if result.outcome == "timed_out":
        return ConnectionCheck(ConnectTimeout.kind, None, "`true` did not finish in time")
    if result.exit_code != 0:
        return ConnectionCheck(ProtocolError.kind, latency_ms, f"`true` ended with {result}")
    return ConnectionCheck("ok", latency_ms, f"logged in as {target.username} and ran `true`")


def _discard(stream: Stream, data: bytes) -> None:
    pass


class Session:
    """An authenticated connection; each `run` gets its own channel, so runs may overlap."""

    def __init__(self, transport: paramiko.Transport, target: Target) -> None:
        self._transport = transport
        self._target = target
        self._signals: dict[int, str] = {}
        capture_exit_signals(transport, self._signals)
        self._orders: dict[int, ArrivalOrder] = {}
        record_arrival_order(transport, self._orders)
        self._patience = 0.0  # how long this connection waits for a silent server
        self._patience_lock = threading.Lock()
        # How long the server may take to confirm a new session (servers.ssh.pool shortens
        # it for a connection that sat idle).
        self.open_timeout = target.connect_timeout

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._transport.close()

    def is_active(self) -> bool:
        return self._transport.is_active()

    def run(
        self,
        script: bytes,
        interpreter: str,
        on_output: Callable[[Stream, bytes], None],
        *,
        stop: threading.Event,
        timeout: float | None = None,
        kill_grace: float = 2.0,
        heartbeat: float = 5.0,
        terminal: bool = False,
        environment: Mapping[str, str] | None = None,
    ) -> RunResult:
        """Run `script` with `interpreter`, passing output to `on_output` as it arrives.

        `on_output` may block: that only slows the remote down. Output is handed over in the
        order it arrived, across both streams. Raises ProtocolError if the command cannot be
        started.

        The remote stops the script when it hears no heartbeat, sent every `heartbeat`
        seconds, for MISSED_HEARTBEATS intervals: a partitioned client cannot hang up.

        With `terminal`, the script runs under a pseudo-terminal (see servers.ssh.terminal):
        one merged stream, all of it "stdout", in the exact order it was written.

        `environment` reaches the script, and only the script, as exported variables. They
        travel on stdin ahead of the script, never in the command line, an SSH "env" request
        or a remote file. Raises ValueError for a name that is not [A-Z_][A-Z0-9_]* or a
        value with a NUL. Names the remote's /bin/sh manages itself (bash's RANDOM, SECONDS,
        `_`, the read-only UID...) do not arrive as given: callers keep them out.
        """
        command = wrapper_command(len(script), interpreter, kill_grace, heartbeat)
        stdin = environment_block(environment or {}) + script
        if stop.is_set():
            return RunResult("cancelled", None)
        self._outwait(outlives_silence(heartbeat, kill_grace))
        channel, order = self._open(command, terminal)
        beats = Heartbeat(channel, heartbeat)
        try:
            outcome = supervise(
                channel, order, memoryview(stdin), on_output, stop, timeout, kill_grace, beats
            )
            signal = self._signals.get(channel.get_id())
            reported = channel.exit_status >= 0 or signal is not None
            if outcome == "exited" and not reported:
                outcome = "disconnected"
            exit_code = channel.exit_status if channel.exit_status >= 0 else None
            return RunResult(outcome, exit_code, signal)
        finally:
            beats.stop()
            # Closing sends EOF too, so even if on_output raised the watcher stops the script.
            channel.close()
            self._signals.pop(channel.get_id(), None)
            self._orders.pop(channel.get_id(), None)

    def _outwait(self, seconds: float) -> None:
        """Give up on a silent server only once a script it runs for us must have stopped:
        a run reported lost while its script still runs would run twice if re-run."""
        with self._patience_lock:
            if seconds > self._patience:
                self._patience = seconds
                give_up_on_silent_peer_after(self._transport, seconds)

    def _open(self, command: str, terminal: bool) -> tuple[paramiko.Channel, ArrivalOrder]:
        try:
            channel = self._transport.open_session(timeout=self.open_timeout)
        except (paramiko.SSHException, EOFError, OSError) as exc:
            raise ProtocolError(f"cannot open a session on {self._target.host}: {exc}") from exc
        # Before the command starts, so that the order of its very first output is noted.
        order = self._orders[channel.get_id()] = ArrivalOrder()
        try:
            if terminal:
                self._step(channel, request_terminal, "get a pseudo-terminal (PermitTTY?)")
            self._step(channel, lambda opened: opened.exec_command(command), "start a command")
        except ProtocolError:
            self._orders.pop(channel.get_id(), None)
            raise
        return channel, order

    def _step(
        self, channel: paramiko.Channel, step: Callable[[paramiko.Channel], object], what: str
    ) -> None:
        try:
            step(channel)
        except (paramiko.SSHException, EOFError, OSError) as exc:
            channel.close()
            raise ProtocolError(f"cannot {what} on {self._target.host}: {exc}") from exc
