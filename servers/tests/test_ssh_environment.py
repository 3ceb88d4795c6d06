"""Environment variables for a script (job parameters, secrets): they arrive byte for byte,
whatever the interpreter, login shell or /bin/sh, and travel over stdin only: never in a
command line, in the environment of any process but the script's, or in a file.

Remote processes are local processes here, so /proc and the file system show what a remote
user could see.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import stat
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import paramiko
import pytest

from servers import ssh
from servers.ssh.remote import environment_block, wrapper_command
from servers.tests import test_ssh
from servers.tests.test_ssh import SYSTEM_SHELLS, Output, pids_tagged, run, wait_until
from servers.tests.test_terminal import StopAfter

if TYPE_CHECKING:
    from servers.tests.sshd import LocalSshd

pytest_plugins = ["servers.tests.sshd"]

pytestmark = pytest.mark.timeout(180)

token = test_ssh.token  # tags remote processes and kills what is left of them

WITH_AND_WITHOUT_TERMINAL = pytest.mark.parametrize(
    "terminal", [False, True], ids=["no-terminal", "terminal"]
)
LOGIN_SHELLS = ["/bin/dash", "/bin/bash", "/usr/bin/zsh", "/usr/bin/fish", "/usr/bin/tcsh"]
WRAPPER_FAILED = 125

KIB = 1024
HOSTILE = {
    "SINGLE_QUOTES": "it's 'quoted' '",
    "DOUBLE_QUOTES": 'say "hi" "',
    "DOLLARS": "$HOME ${PATH} $(id -u) $((6 * 7)) $1 $@ $$ $",
    "BACKTICKS": "`id` `touch /tmp/tsubame-pwned` `",
    "BACKSLASHES": "\\ \\\\ \\n \\t \\0 \\x41 \\u263a \\",
    "NEWLINES": "one\ntwo\n\nfour",
    "TRAILING_NEWLINE": "value\n",
    "TRAILING_NEWLINES": "value\n\n\n",
    "LEADING_NEWLINE": "\nvalue",
    "ONLY_NEWLINE": "\n",
    "ONLY_NEWLINES": "\n\n\n\n",
    "EMPTY": "",
    "SPACES": "  leading and trailing  ",
    "ONLY_SPACES": "   ",
    "TABS": "\tcolumn\tcolumn\t",
    "CARRIAGE_RETURNS": "dos\r\nold mac\rend\r",
    # Everything a terminal's line discipline would act on (^C ^D ^Z ^S ^Q, DEL, ESC).
    "CONTROL": "".join(map(chr, range(1, 32))) + "\x7f",
    "UNICODE": "日本語 ✓ Ünïcødé 🚀 \u200b",
    "GLOBS": "* ? [a-z] [!x] ~ ~root {a,b}",
    "ECHO_N": "-n",
    "ECHO_E": "-e \\n\\c",
    "PERCENTS": "%s %d %% %n %",
    "SHELL_SYNTAX": "; exit 1 && rm -rf / || true & | > /dev/null < x ( ) { } # esac ;; done",
    "FUNCTION_LOOKALIKE": "() { :; }; echo imported",
    "EQUALS": "A=B=C=",
    "FRAMING_LOOKALIKE": "X 3\n\nY 1\n\n\n",  # looks like the environment block itself
    "LARGE_LINES": ("a line with 'quotes', \"quotes\" and $dollars\n" * 3000)[: 100 * KIB],
    "LARGE_LINE": "x" * (100 * KIB),
}
FIFTY = {f"VAR_{number:02d}": f"value {number}\n" * (number % 3) for number in range(50)}

# For each name in turn: NAME, "set" if it is set, and the hex of its bytes. Hex because a
# terminal turns the script's newlines into CR LF.
SHELL_DUMP = (
    'printf "%s %s " {name} "${{{name}+set}}"; '
    'printf %s "${name}" | od -An -tx1 -v | tr -d " \\n"; echo\n'
)
PYTHON_DUMP = (
    "import os\n"
    "for name in {names!r}:\n"
    "    value = os.environ.get(name)\n"
    "    state = '' if value is None else 'set'\n"
    "    print(name, state, os.fsencode(value or '').hex(), flush=True)\n"
)


def dump_script(names: list[str], interpreter: str = "/bin/sh") -> bytes:
    """A script that prints each variable's bytes (see received)."""
    if interpreter.endswith("python3"):
        return PYTHON_DUMP.format(names=names).encode()
    return "".join(SHELL_DUMP.format(name=name) for name in names).encode()


def received(output: bytes) -> dict[str, bytes | None]:
    """What dump_script printed: each variable's bytes, None for one that was not set."""
    found: dict[str, bytes | None] = {}
    for line in output.decode().splitlines():
        name, *rest = line.split()
        found[name] = bytes.fromhex(rest[1] if len(rest) > 1 else "") if rest else None
    return found


def as_bytes(environment: dict[str, str]) -> dict[str, bytes | None]:
    return {name: value.encode() for name, value in environment.items()}


def feed(
    argv: list[str], stdin: bytes, *, hang_up: bool = False, **popen: Any
) -> tuple[int, bytes]:
    """Run a wrapper the way sshd runs a command (a new session, so that its `kill 0` can
    never reach pytest), send `stdin`, and wait for the end: with stdin kept open, as a
    connected client does, or closed at once (`hang_up`), as a client that went away."""
    remote = subprocess.Popen(
        argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, start_new_session=True, **popen
    )
    assert remote.stdin is not None
    assert remote.stdout is not None
    try:
        remote.stdin.write(stdin)
        remote.stdin.flush()
        if hang_up:
            remote.stdin.close()
        output = remote.stdout.read()
        return remote.wait(30), output
    finally:
        with contextlib.suppress(BrokenPipeError):
            remote.stdin.close()
        remote.kill()


def body(script: bytes, interpreter: str = "/bin/sh") -> str:
    """What the wrapper's /bin/sh runs, to run it with another shell as /bin/sh."""
    command = wrapper_command(len(script), interpreter, 0.5, 10)
    return command.removeprefix("exec /bin/sh -c '").removesuffix("'")


@pytest.fixture
def session(sshd: LocalSshd) -> Iterator[ssh.Session]:
    with ssh.connect(sshd.target()) as opened:
        yield opened


@pytest.fixture
def private_tmp() -> Iterator[Path]:
    """A directory the sshd login user can write to, removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix="tsubame-env-"))
    path.chmod(0o777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


# Byte for byte


@WITH_AND_WITHOUT_TERMINAL
@pytest.mark.parametrize("interpreter", ["/bin/sh", "/bin/bash", "/usr/bin/python3"])
def test_hostile_values_arrive_byte_for_byte(
    session: ssh.Session, interpreter: str, terminal: bool
) -> None:
    script = dump_script([*HOSTILE, "NEVER_SENT"], interpreter)
    result, output = run(session, script, interpreter, terminal=terminal, environment=HOSTILE)
    assert result == ssh.RunResult("exited", 0)
    assert received(output.stdout) == as_bytes(HOSTILE) | {"NEVER_SENT": None}
    assert not Path("/tmp/tsubame-pwned").exists()  # BACKTICKS was never evaluated


def test_fifty_variables_arrive(session: ssh.Session) -> None:
    result, output = run(session, dump_script(list(FIFTY)), "/bin/sh", environment=FIFTY)
    assert result == ssh.RunResult("exited", 0)
    assert received(output.stdout) == as_bytes(FIFTY)


def test_values_are_not_echoed_under_a_terminal(session: ssh.Session) -> None:
    result, output = run(session, "echo done", terminal=True, environment=HOSTILE)
    assert (result, output.stdout) == (ssh.RunResult("exited", 0), b"done\r\n")


@pytest.mark.parametrize("shell", LOGIN_SHELLS)
def test_variables_arrive_under_any_login_shell(shell: str) -> None:
    if not Path(shell).exists():
        pytest.skip(f"{shell} is not installed")
    script = dump_script(list(HOSTILE))
    command = wrapper_command(len(script), "/bin/sh", 0.5, 10)
    code, output = feed([shell, "-c", command], environment_block(HOSTILE) + script)
    assert (code, received(output)) == (0, as_bytes(HOSTILE))


@pytest.mark.parametrize("shell", SYSTEM_SHELLS.values(), ids=SYSTEM_SHELLS.keys())
def test_variables_arrive_under_any_system_shell(shell: list[str]) -> None:
    if not Path(shell[0]).exists():
        pytest.skip(f"{shell[0]} is not installed")
    script = dump_script(list(HOSTILE))
    code, output = feed([*shell, "-c", body(script)], environment_block(HOSTILE) + script)
    assert (code, received(output)) == (0, as_bytes(HOSTILE))


def test_variables_arrive_where_head_reads_past_its_count(tmp_path: Path) -> None:
    # Alpine's head is busybox's, which reads a pipe in 4096-byte blocks whatever its count:
    # whatever follows the script on stdin is lost, which is why the variables come first.
    if not Path("/bin/busybox").exists():
        pytest.skip("/bin/busybox is not installed")
    ahead = subprocess.run(
        ["/bin/busybox", "sh", "-c", "busybox head -c 1 >/dev/null; cat"],
        input=b"abc",
        capture_output=True,
        check=True,
    )
    assert ahead.stdout == b""  # head took all three bytes, not one
    applets = tmp_path / "bin"
    applets.mkdir()
    for tool in ("head", "mktemp", "wc", "rm", "sleep"):
        (applets / tool).symlink_to("/bin/busybox")
    script = dump_script(list(HOSTILE))
    code, output = feed(
        ["/bin/busybox", "sh", "-c", body(script)],
        environment_block(HOSTILE) + script,
        env={"PATH": f"{applets}:/usr/bin:/bin"},
    )
    assert (code, received(output)) == (0, as_bytes(HOSTILE))


# Only the script


def test_tmpdir_for_the_script_does_not_move_the_wrappers_temp_files(
    session: ssh.Session, private_tmp: Path
) -> None:
    # $0 is the wrapper's copy of the script; the wrapper's other file would show in `ls`.
    script = 'echo "$0"; ls -A "$TMPDIR"; mktemp'
    result, output = run(session, script, "/bin/sh", environment={"TMPDIR": str(private_tmp)})
    assert result == ssh.RunResult("exited", 0)
    wrapper_file, script_file = map(Path, output.stdout.decode().split())
    assert wrapper_file.parent != private_tmp
    assert script_file.parent == private_tmp  # the script itself does get the variable


@WITH_AND_WITHOUT_TERMINAL
def test_values_show_in_no_command_line_other_environment_or_file(
    session: ssh.Session, sshd: LocalSshd, terminal: bool
) -> None:
    since = time.time() - 1  # mtimes are coarser than this clock
    tokens = [f"tsubame-secret-{uuid.uuid4().hex}" for _ in range(3)]
    environment = {
        "ONE_LINE": tokens[0],
        "SEVERAL_LINES": f"first\n{tokens[1]}\nthird\n",
        "LARGE": (tokens[2] + "\n") * 1000,
    }
    stop = threading.Event()
    output = Output()
    results: list[ssh.RunResult] = []
    # Stopped by the test: long enough for its scans of /proc and every temp directory.
    script = b'echo "interpreter $$"; exec sleep 600'
    runner = threading.Thread(
        target=lambda: results.append(
            session.run(
                script, "/bin/sh", output, stop=stop, terminal=terminal, environment=environment
            )
        )
    )
    runner.start()
    try:
        output.wait_for(b"interpreter")
        interpreter = int(output.stdout.split()[1])
        # Read once the script's `exec` is done: during it, environ reads back empty.
        wait_until(lambda: read_proc(interpreter, "cmdline").startswith(b"sleep"), 10, "the exec")
        # The process the script runs in (here `sleep`, by exec) is where they belong.
        assert all(token.encode() in read_proc(interpreter, "environ") for token in tokens)
        listing = subprocess.run(["ps", "-eo", "args"], capture_output=True, check=True).stdout
        assert not holders(listing, tokens)
        for pid in all_pids():
            assert not holders(read_proc(pid, "cmdline"), tokens), f"in the command line of {pid}"
            if pid != interpreter:
                assert not holders(read_proc(pid, "environ"), tokens), f"in the env of {pid}"
        # Open files too: a here-document's temp file is deleted while still being read.
        for pid in session_pids(interpreter):
            assert not holders(b"".join(open_file_contents(pid)), tokens), f"open in {pid}"
        assert files_holding(tokens, sshd, since) == []
    finally:
        stop.set()
        runner.join(15)
    assert [result.outcome for result in results] == ["cancelled"]
    assert files_holding(tokens, sshd, since) == []


def holders(data: bytes, tokens: list[str]) -> list[str]:
    return [token for token in tokens if token.encode() in data]


def all_pids() -> list[int]:
    return [int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit()]


def read_proc(pid: int, name: str) -> bytes:
    try:
        return Path(f"/proc/{pid}/{name}").read_bytes()
    except OSError:
        return b""  # gone meanwhile


def session_pids(pid: int) -> list[int]:
    """The processes of `pid`'s session: the wrapper, its watcher and clock, the script."""

    def session_of(other: int) -> str | None:
        fields = read_proc(other, "stat").rsplit(b")", 1)[-1].split()
        return fields[3].decode() if len(fields) > 3 else None

    wanted = session_of(pid)
    return [other for other in all_pids() if session_of(other) == wanted]


def open_file_contents(pid: int) -> Iterator[bytes]:
    with contextlib.suppress(OSError):
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                if stat.S_ISREG(fd.stat().st_mode):
                    yield fd.read_bytes()


def files_holding(tokens: list[str], sshd: LocalSshd, since: float) -> list[Path]:
    """Regular files in the temp directories or the login user's home that hold a token.

    Only files written since the run began (`since`) can: older ones, such as checkouts and
    databases in /tmp, are skipped rather than read whole."""
    home = Path(pwd.getpwnam(sshd.username).pw_dir)
    found = []
    for root in (Path("/tmp"), Path("/var/tmp"), Path("/dev/shm"), home):
        for directory, _, names in os.walk(root):
            for name in names:
                path = Path(directory, name)
                with contextlib.suppress(OSError):
                    info = path.lstat()
                    if not stat.S_ISREG(info.st_mode) or info.st_mtime < since:
                        continue
                    if holders(path.read_bytes(), tokens):
                        found.append(path)
    return found


def test_command_carries_nothing_of_the_environment(
    session: ssh.Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    commands: list[str] = []
    exec_command = paramiko.Channel.exec_command

    def record(channel: paramiko.Channel, command: str) -> None:
        commands.append(command)
        exec_command(channel, command)

    def refuse(channel: paramiko.Channel, *args: object) -> None:
        raise AssertionError("an SSH env request was sent")

    monkeypatch.setattr(paramiko.Channel, "exec_command", record)
    monkeypatch.setattr(paramiko.Channel, "set_environment_variable", refuse)
    monkeypatch.setattr(paramiko.Channel, "update_environment", refuse)
    script = b'printf %s "$SECRET_TOKEN"'
    secret = uuid.uuid4().hex
    result, output = run(session, script, "/bin/sh", environment={"SECRET_TOKEN": secret})
    assert (result.exit_code, output.stdout) == (0, secret.encode())
    # The very command a run without variables sends: no name, value, size or count.
    assert commands == [wrapper_command(len(script), "/bin/sh", 2.0, 5.0)]


# Refused, or never run on partial input


@pytest.mark.parametrize(
    "environment",
    [
        {"lower": "x"},
        {"1ABC": "x"},
        {"A-B": "x"},
        {"A B": "x"},
        {"": "x"},
        {"NAME\n": "x"},
        {"NAMÉ": "x"},
        {"A=B": "x"},
        {"NUL": "secret-before\0after"},
        {"SURROGATE": "secret-before\ud800"},
    ],
)
def test_run_refuses_what_it_cannot_deliver_without_showing_the_value(
    session: ssh.Session, environment: dict[str, str], token: str
) -> None:
    refusals = "not an environment variable name|contains a NUL|not encodable as UTF-8"
    with pytest.raises(ValueError, match=refusals) as caught:
        run(session, f"exec -a {token} sleep 60", environment=environment)
    assert "secret" not in str(caught.value)
    assert pids_tagged(token) == []


MALFORMED_BLOCKS = {
    "lower-case name": b"lower 1\nx\n\n",
    "leading digit": b"1A 1\nx\n\n",
    "dash in name": b"A-B 1\nx\n\n",
    "space in name": b"A B 1\nx\n\n",
    "glob as name": b"* 1\nx\n\n",
    "assignment as name": b"A=B 1\nx\n\n",
    "non-ascii name": "NAMÉ 1\nx\n\n".encode(),
    "no count": b"NAME\nx\n\n",
    "zero lines": b"NAME 0\n\n",
    "negative count": b"NAME -1\nx\n\n",
    "count not a number": b"NAME one\nx\n\n",
}


@pytest.mark.parametrize("shell", SYSTEM_SHELLS.values(), ids=SYSTEM_SHELLS.keys())
@pytest.mark.parametrize("block", MALFORMED_BLOCKS.values(), ids=MALFORMED_BLOCKS.keys())
def test_malformed_environment_runs_nothing(shell: list[str], block: bytes) -> None:
    if not Path(shell[0]).exists():
        pytest.skip(f"{shell[0]} is not installed")
    script = b"echo ran"
    code, output = feed([*shell, "-c", body(script)], block + script)
    assert (code, output) == (WRAPPER_FAILED, b"")


@pytest.mark.parametrize("shell", SYSTEM_SHELLS.values(), ids=SYSTEM_SHELLS.keys())
def test_environment_cut_short_runs_nothing_and_leaves_nothing(
    shell: list[str], tmp_path: Path
) -> None:
    if not Path(shell[0]).exists():
        pytest.skip(f"{shell[0]} is not installed")
    script = b"echo ran"
    block = environment_block({"FIRST": "one\ntwo", "SECOND": "x"})
    header_end = block.index(b"\n") + 1
    # Within a name, after a header, within a value, before the end line, within the script.
    cuts = [0, 3, header_end, header_end + 2, len(block) - 1, len(block) + 4]
    for cut in cuts:
        code, output = feed(
            [*shell, "-c", body(script)],
            (block + script)[:cut],
            hang_up=True,
            env={"PATH": os.environ["PATH"], "TMPDIR": str(tmp_path)},  # where mktemp writes
        )
        assert (cut, code, output) == (cut, WRAPPER_FAILED, b"")
        assert list(tmp_path.iterdir()) == []


@WITH_AND_WITHOUT_TERMINAL
def test_cancel_while_the_environment_is_sent_runs_nothing(
    session: ssh.Session, token: str, terminal: bool
) -> None:
    environment = {f"LARGE_{number}": "x" * (100 * KIB) for number in range(30)}
    script = f"exec -a {token} sleep 60\n#".encode() + b"#" * (uuid.uuid4().int % 10**6)
    # Asked before opening the channel, then once per 32 KiB block: stops after two blocks.
    result, output = run(
        session, script, stop=StopAfter(3), terminal=terminal, environment=environment
    )
    assert (result, output.stdout) == (ssh.RunResult("cancelled", None), b"")
    # The wrapper's command line names the size it waits for, unique to this script.
    wait_until(lambda: not pids_tagged(f"head -c {len(script)} "), 5, "the wrapper ends")
    assert pids_tagged(token) == []
