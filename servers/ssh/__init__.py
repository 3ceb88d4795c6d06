"""The SSH layer: connect with a pinned host key, run a script, stream its output, stop it.

Imports nothing from Django so it can be tested against a real sshd on its own.

Host keys are checked right after key exchange, before any credential is even parsed: an
unknown or changed key never sees a password or a signature.

Stopping a remote command: OpenSSH ignores "signal" requests without a pty, and closing the
channel does not kill a command that runs without one. What does hold (checked on OpenSSH
9.2) is that sshd runs each no-pty command as `$SHELL -c COMMAND` in a new session, so the
shell we exec is session and process-group leader and everything the script starts shares its
group. `run` sends `exec /bin/sh -c '<wrapper>'`, writes the environment block (below) and then
exactly len(script) bytes to stdin, and keeps stdin open. The wrapper copies the script into a
private temp file, starts a watcher that blocks reading the rest of stdin, and runs
`interpreter tmpfile` with stdin at /dev/null.
When we cancel we send a stop line and EOF (`shutdown_write`); stdin also reaches EOF when the
channel closes (even if our caller raised) or when the TCP connection dies (our process was
killed): the watcher then sends TERM to its process group (`kill 0`), waits the grace period
and sends KILL. On a normal exit the wrapper kills the watcher first, so daemons the script
started on purpose survive. Processes that leave the group (setsid, a new session) escape
this, as they would a Ctrl-C.

Environment variables for the script (job parameters, secrets) travel on stdin as well, never in
the command line (any user on the host can read it with ps), an SSH "env" request or a file. The
block comes first: for each variable a line `NAME COUNT`, then the COUNT lines of its value
split at its newlines (an empty value is one empty line; a trailing newline makes a last, empty
line), and an empty line ends the block. The wrapper reads it with the shell's `read -r`, which
takes a pipe one byte at a time: no helper process whose arguments would show a value or its
length, and nothing read past the block. That matters because busybox's `head -c` (Alpine's
head) reads a pipe in 4096-byte blocks whatever its count, so only heartbeats may follow the
script. The wrapper checks each name again, and on a malformed block or one cut short by a hang-
up it exits (125, or 129 when a terminal hangs up) without running anything. The values wait in
its positional parameters, in memory and not exported, and are exported only in the subshell
that execs the interpreter: the wrapper's own commands (sleep, rm) neither carry them in their
environment nor obey them (a TMPDIR for the script does not move the temp file, made before the
block is even read). Names the remote's /bin/sh manages itself (bash's `_`, RANDOM, SECONDS,
read-only UID...) do not arrive as given; the caller refuses them.

A run may ask for a pseudo-terminal (servers.ssh.terminal). The environment, the script and the
heartbeats then pass through that terminal, in raw mode, and sshd never passes EOF on to it: the
stop line is what stops the script, and closing the channel hangs the terminal up, which the
watcher reads as EOF. As on any terminal, the script's group gets a HUP when it ends, so
background processes started without nohup or setsid end with it.

Output is handed to the caller in the order it arrived, across stdout and stderr
(servers.ssh.arrival); with a terminal there is only one stream, in the order written.

A connection can also die without any EOF: in a network partition sshd never hears a reset
and, with its default `ClientAliveInterval 0`, keeps the session forever. So once the script
is sent we write a heartbeat line to stdin every `heartbeat` seconds, from a thread of its
own (a blocked output callback is not a dead client), and the wrapper's clock, in plain sh
with `sleep` (no `timeout`, perl or python on the remote), stops the script after
MISSED_HEARTBEATS intervals without one. The client's TCP gives up on unacknowledged data
only after that (`outlives_silence`), so a run reported "disconnected" is no longer running.

A run's connection can be kept open for the next run on the same server (servers.ssh.pool).

A connection lost while a command runs gives outcome "disconnected", not an exception: the
output so far was delivered and the caller records a result either way. Failing to start the
command at all raises ProtocolError.
"""

from servers.ssh.errors import (
    AuthFailed,
    ConnectTimeout,
    CredentialError,
    HostKeyChanged,
    HostKeyUnknown,
    ProtocolError,
    SSHError,
    Unreachable,
)
from servers.ssh.keys import Credentials, HostKey, load_private_key
from servers.ssh.pool import ConnectionPool
from servers.ssh.remote import EXIT_DRAIN_SECONDS, INTERPRETER_PATTERN, RunResult, Stream
from servers.ssh.session import ConnectionCheck, Session, check_connection, connect
from servers.ssh.transport import Target, fetch_host_key

__all__ = [
    "EXIT_DRAIN_SECONDS",
    "INTERPRETER_PATTERN",
    "AuthFailed",
    "ConnectTimeout",
    "ConnectionCheck",
    "ConnectionPool",
    "CredentialError",
    "Credentials",
    "HostKey",
    "HostKeyChanged",
    "HostKeyUnknown",
    "ProtocolError",
    "RunResult",
    "SSHError",
    "Session",
    "Stream",
    "Target",
    "Unreachable",
    "check_connection",
    "connect",
    "fetch_host_key",
    "load_private_key",
]
