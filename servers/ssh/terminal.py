"""Running under a pseudo-terminal: what we ask the server for, and why.

Many programs print colours and progress only on a terminal, and only a terminal gives the
exact interleaving of stdout and stderr: both are the same terminal, so the remote writes
one stream and sshd cannot reorder it.

The script still arrives on stdin, which is now that terminal, and a terminal's line
discipline would change it on the way: echo it back into the output, turn CR into NL, act on
^C, ^Z, ^S and ^Q, drop lines past 4096 bytes. Setting raw mode from the wrapper would come
too late for bytes already sent, so the request itself carries the terminal modes (RFC 4254
section 8): no echo, no line editing, no signals, no input translation. sshd applies them
before it starts the command. Output keeps a terminal's processing (OPOST, ONLCR: a newline
is sent as CR LF), as a terminal would show it.
"""

from __future__ import annotations

import struct

import paramiko
from paramiko.common import cMSG_CHANNEL_REQUEST

TERM = "xterm-256color"
COLUMNS, ROWS = 120, 40

# (opcode, value) pairs from RFC 4254 section 8 and RFC 8160 (IUTF8).
_MODES = (
    (33, 0),  # ISTRIP
    (34, 0),  # INLCR
    (35, 0),  # IGNCR
    (36, 0),  # ICRNL
    (38, 0),  # IXON
    (39, 0),  # IXANY
    (40, 0),  # IXOFF
    (50, 0),  # ISIG
    (51, 0),  # ICANON
    (53, 0),  # ECHO
    (54, 0),  # ECHOE
    (55, 0),  # ECHOK
    (56, 0),  # ECHONL
    (59, 0),  # IEXTEN
    (42, 1),  # IUTF8
    (70, 1),  # OPOST
    (72, 1),  # ONLCR
    (91, 1),  # CS8
    (92, 0),  # PARENB
)
TTY_OP_END = 0
ENCODED_MODES = b"".join(struct.pack(">BI", code, value) for code, value in _MODES) + bytes(
    [TTY_OP_END]
)


def request_terminal(channel: paramiko.Channel) -> None:
    """Ask for a pseudo-terminal in raw input mode; raises SSHException if refused.

    `Channel.get_pty` sends no terminal modes, so this is its message with ours added.
    """
    message = paramiko.Message()
    message.add_byte(cMSG_CHANNEL_REQUEST)
    message.add_int(channel.remote_chanid)
    message.add_string("pty-req")
    message.add_boolean(True)  # want a reply: a refusal must not go unnoticed
    message.add_string(TERM)
    for size in (COLUMNS, ROWS, 0, 0):  # characters, then pixels (unknown)
        message.add_int(size)
    message.add_string(ENCODED_MODES)
    channel._event_pending()
    channel.transport._send_user_message(message)
    channel._wait_for_event()
