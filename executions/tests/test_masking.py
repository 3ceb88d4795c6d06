"""Secret masking: which forms are masked, bash's quoting matched byte for byte, and a stream
fed in any pieces giving exactly what one mask of the whole gives."""

from __future__ import annotations

import base64
import functools
import json
import os
import random
import re
import subprocess
import textwrap
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from executions import masking
from executions.masking import (
    MASK,
    SecretMasker,
    bash_printf_quote,
    bash_xtrace_quote,
    secret_forms,
)


def utf8(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


def reference_mask(forms: Iterable[bytes], data: bytes) -> bytes:
    """Every byte of every occurrence (overlapping ones too) of every form is covered, and
    each run of covered bytes becomes one MASK."""
    covered = bytearray(len(data))
    for form in forms:
        at = data.find(form)
        while at >= 0:
            covered[at : at + len(form)] = b"\x01" * len(form)
            at = data.find(form, at + 1)
    runs = re.finditer(b"\x01+", bytes(covered))
    parts, cursor = [], 0
    for run in runs:
        parts += (data[cursor : run.start()], MASK)
        cursor = run.end()
    return b"".join([*parts, data[cursor:]])


def feed_in_pieces(masker: SecretMasker, data: bytes, cuts: Iterable[int]) -> bytes:
    """Feeds `data` cut at `cuts`, checking the held-back tail after each piece."""
    stream = masker.stream()
    output = []
    fed = 0
    for cut in [*sorted(cuts), len(data)]:
        output.append(stream.feed(data[fed:cut]))
        fed = max(fed, cut)
        held = stream.held_back
        assert held < masker.longest
        # Held back only while a later piece could complete a form, which may begin up to
        # `longest` bytes earlier inside a masked span.
        starts = range(max(0, fed - masker.longest), fed - held + 1)
        assert not held or any(
            form.startswith(data[at:fed]) for at in starts for form in masker.forms
        )
    output.append(stream.finish())
    return b"".join(output)


def filler(size: int) -> bytes:
    """Random bytes without "*", so that every "***" in the output is a mask."""
    rng = random.Random(size)
    return bytes(rng.randrange(256) for _ in range(size)).replace(b"*", b"+")


BASH = Path("/bin/bash")
LOCALES = {"C.UTF-8": True, "C": False}  # locale -> is it UTF-8


def bash_version() -> str:
    if not BASH.exists():
        return ""
    return subprocess.run(
        [BASH, "-c", 'echo "${BASH_VERSINFO[0]}.${BASH_VERSINFO[1]}"'],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


needs_bash_5_2 = pytest.mark.skipif(
    bash_version() != "5.2", reason="the quoting functions reproduce bash 5.2"
)

# Each is passed to bash in $V: quoting characters, expansions, blanks, control characters,
# UTF-8, and the code point classes where glibc's idea of printable decides the quoting.
BASH_VALUES = [
    "plainValue123",
    "it's",
    "'",
    "''",
    'say "hi"',
    "cost $HOME and ${x}",
    "back`tick`",
    "back\\slash\\",
    "with space",
    "tab\there",
    "\ttab first",
    " leading space",
    "line one\nline two",
    "trailing newline\n",
    "multi 'line'\nwith \"all\" $of\nthe \\ chars",
    "ünïcödé",
    "é日本語",
    "aé b",
    "bang!bang",
    "~tilde",
    "a=~b",
    "path:~/x",
    "mid~tilde",
    "#hash",
    "mid#hash",
    "star*glob?[a-z]",
    "semi;amp&pipe|lt<gt>(paren){brace}",
    "comma,percent%at@caret^equals=colon:",
    "ctrl\x01\x1b\x7f",
    "bell\a vt\v bs\b ff\f cr\r",
    "cr\r only",
    "\u0085 next line",
    "\u00a0no-break space",
    "\u200bzero width",
    "\u2028line separator",
    "\u0378unassigned",
    "\ue000private use",
    "😀 emoji",
    "e\u0301 combining",
]


def run_bash(
    value: str, script: str, locale: str, *options: str
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [BASH, *options, "-c", script],
        env={"PATH": os.defpath, "LC_ALL": locale, "V": value},
        capture_output=True,
        check=True,
        timeout=10,
    )


@needs_bash_5_2
@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize("value", BASH_VALUES, ids=ascii)
def test_printf_quote_is_what_bash_prints(value: str, locale: str) -> None:
    printed = run_bash(value, 'printf %q "$V"', locale).stdout
    assert utf8(bash_printf_quote(value, LOCALES[locale])) == printed


@needs_bash_5_2
@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize("value", BASH_VALUES, ids=ascii)
def test_xtrace_quote_is_what_bash_traces(value: str, locale: str) -> None:
    # Newline and tab are shell metacharacters, and bash 5.2 checks those before control
    # characters: such a value is traced in '...' with the newline as is, not as $'...'.
    quoted = utf8(bash_xtrace_quote(value, LOCALES[locale]))
    assert run_bash(value, 'echo "$V"', locale, "-x").stderr == b"+ echo " + quoted + b"\n"
    assert run_bash(value, "X=$V", locale, "-x").stderr == b"+ X=" + quoted + b"\n"


@needs_bash_5_2
@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize("value", [v for v in BASH_VALUES if len(utf8(v)) >= 4], ids=ascii)
def test_nothing_bash_prints_of_a_secret_survives_masking(value: str, locale: str) -> None:
    scripts = [
        ('printf "[%q] [%q] [%q]\\n" "$V" "--password=$V" "x$V"', ()),
        ('printf "<%s>\\n" "$V"', ()),
        ('echo "$V"', ("-x",)),
        ("X=$V", ("-x",)),
        # Part of a longer word: bash quotes the whole word.
        (': "--password=$V" "Bearer $V!" "$(printf "\\001")$V"', ("-x",)),
        ('printf %s "$V" | base64', ()),
        ('printf %s "$V" | base64 -w0', ()),
    ]
    masker = SecretMasker([value])
    for script, options in scripts:
        done = run_bash(value, script, locale, *options)
        masked = masker.mask(done.stdout + done.stderr)
        assert MASK in masked, script
        assert not [form for form in masker.forms if form in masked], (script, masked)


def test_forms_of_a_value() -> None:
    value = 'p@ss w"rd/é'
    forms = secret_forms(value)
    raw = utf8(value)
    expected = {
        raw,
        base64.b64encode(raw),
        base64.b64encode(raw).rstrip(b"="),
        base64.urlsafe_b64encode(raw),
        base64.urlsafe_b64encode(raw).rstrip(b"="),
        quote(raw, safe="").encode(),
        quote_plus(raw).encode(),
        quote(raw).encode(),
        utf8(json.dumps(value)[1:-1]),
        utf8(json.dumps(value, ensure_ascii=False)[1:-1]),
        utf8(bash_printf_quote(value)),
        utf8(bash_printf_quote(value, utf8_locale=False)),
        utf8(bash_xtrace_quote(value)),
        utf8(bash_xtrace_quote(value, utf8_locale=False)),
        b"'p@ss w\"rd/\xc3\xa9'",  # shlex.quote
    }
    assert expected <= forms


def test_long_values_are_also_masked_as_wrapped_base64() -> None:
    value = "a secret long enough for base64 to wrap its output at seventy-six columns"
    wrapped = subprocess.run(
        ["base64"], input=value.encode(), capture_output=True, check=True
    ).stdout
    assert b"\n" in wrapped.rstrip(b"\n")
    assert SecretMasker([value]).mask(b"key: " + wrapped) == b"key: ***\n"


def test_multi_line_secret_masks_each_line_and_terminal_line_ends() -> None:
    secret = "first line\r\nsecond\nab\n    \nlast line"
    masker = SecretMasker([secret])
    assert masker.mask(b"got second and last line") == b"got *** and ***"
    assert masker.mask(secret.replace("\n", "\r\n").encode()) == b"***"
    assert masker.mask(base64.b64encode(b"first line")) == b"***"
    # Lines under 4 bytes and blank ones would mask half the log.
    assert masker.mask(b"ab    cd") == b"ab    cd"


def test_short_secrets_and_forms_are_ignored() -> None:
    assert not SecretMasker([])
    assert not SecretMasker(["abc", "", "日"])
    assert secret_forms("abc") == frozenset()
    masker = SecretMasker(["abc", "abcd"])
    assert masker
    assert all(len(form) >= 4 for form in masker.forms)
    assert masker.mask(b"abc abcd") == b"abc ***"


def test_held_back_bytes_are_only_a_possible_start_of_a_secret() -> None:
    stream = SecretMasker(["hunter2"]).stream()
    assert stream.feed(b"abc hun") == b"abc "
    assert stream.held_back == 3
    assert stream.feed(b"gry\n") == b"hungry\n"
    assert stream.feed(b"hunt") == b""
    assert stream.feed(b"er2 and more") == b"*** and more"
    assert stream.feed(b"hunte") == b""
    assert stream.finish() == b"hunte"


def test_secret_at_start_end_and_back_to_back() -> None:
    masker = SecretMasker(["s3cr3t"])
    assert masker.mask(b"s3cr3t in the middle s3cr3t") == b"*** in the middle ***"
    # Back to back they are one run of secret bytes: one mask.
    assert masker.mask(b"s3cr3ts3cr3ts3cr3t") == b"***"


def test_secret_overlapping_its_own_prefix() -> None:
    masker = SecretMasker(["abab"])
    assert masker.mask(b"abababab") == b"***"
    assert masker.mask(b"ababab") == b"***"
    assert masker.mask(b"aababb") == b"a***b"
    # However long the run, the stream emits it as it goes: nothing piles up.
    stream = masker.stream()
    assert stream.feed(b"abab") == b"***"
    for _ in range(1000):
        assert stream.feed(b"ab") == b""
        assert stream.held_back < masker.longest
    assert stream.feed(b"x") + stream.finish() == b"x"


def test_overlapping_secrets_are_masked_whole() -> None:
    # An operator's secret parameter "rd=Z" must not take the start of the team secret
    # "Zx9-q7Lm-SuperSecret" and leave its rest bare.
    masker = SecretMasker(["Zx9-q7Lm-SuperSecret", "rd=Z"])
    data = b"db: password=Zx9-q7Lm-SuperSecret\n"
    assert masker.mask(data) == b"db: passwo***\n"
    for cut in range(len(data)):
        assert feed_in_pieces(masker, data, [cut]) == b"db: passwo***\n"
    assert feed_in_pieces(masker, data, range(len(data))) == b"db: passwo***\n"


def test_longest_of_two_secrets_starting_alike_wins() -> None:
    masker = SecretMasker(["token", "token-with-suffix"])
    assert masker.mask(b"token-with-suffix token-with token") == b"*** ***-with ***"
    stream = masker.stream()
    # "token" is complete, but may still become the longer secret.
    assert stream.feed(b"a token") == b"a "
    assert stream.feed(b"-with-suf") == b""
    assert stream.feed(b"fix.") == b"***."


def test_binary_data_with_every_byte_value_around_a_secret() -> None:
    everything = bytes(range(256))
    data = everything + b"hunter2" + everything[::-1] + b"hunter2"
    masker = SecretMasker(["hunter2"])
    assert masker.mask(data) == everything + b"***" + everything[::-1] + b"***"
    assert feed_in_pieces(masker, data, range(1, len(data))) == masker.mask(data)


def test_mask_text_keeps_any_text_intact_but_the_secret() -> None:
    masker = SecretMasker(["pässwörd"])
    assert masker.mask_text("error: pässwörd rejected ✓") == "error: *** rejected ✓"
    assert masker.mask_text("lone \udcff surrogate, pässwörd") == "lone \udcff surrogate, ***"


def test_streams_of_one_masker_are_independent() -> None:
    masker = SecretMasker(["hunter2"])
    out, err = masker.stream(), masker.stream()
    assert out.feed(b"hun") == err.feed(b"hunt") == b""
    assert err.feed(b"er2") == b"***"
    assert out.feed(b"ter2") == b"***"


# Long random secrets with every character a shell quotes: many long forms.
LONG_SECRETS = [
    "".join(random.Random(n).choices("abcdefXYZ0123456789 '\"$\\`!#%&*()[]{};:/+=", k=30))
    for n in range(8)
] + ["a multi-line secret\nwith a 'quote'\nand a \"third\" $line"]


def test_every_form_is_found_at_every_offset() -> None:
    masker = SecretMasker(LONG_SECRETS)
    noise = filler(40)
    for form in masker.forms:
        for shift in range(16):
            data = noise[:shift] + form + noise[shift:]
            assert masker.mask(data) == noise[:shift] + MASK + noise[shift:]


def test_large_pieces_mask_like_the_whole() -> None:
    masker = SecretMasker(LONG_SECRETS)
    forms = sorted(masker.forms, key=len)
    noise = filler(3_001 * len(forms))
    data = b"".join(noise[n * 3_001 : (n + 1) * 3_001] + form for n, form in enumerate(forms))
    masked = masker.mask(data)
    assert masked == reference_mask(forms, data)
    assert masked.count(MASK) == len(forms)
    for piece in (65_536, 65_535, 32_771):
        assert feed_in_pieces(masker, data, range(0, len(data), piece)) == masked


# Forms over 1 KiB are too long for the index of prefixes, and are searched for instead: a
# key (whose lines are short forms) and a long token (all of whose forms are long).
KEY_SECRET = "-----BEGIN KEY-----\n{}\n-----END KEY-----\n".format(
    "\n".join(textwrap.wrap(base64.b64encode(random.Random(2).randbytes(900)).decode(), 64))
)
LONG_TOKEN = "".join(random.Random(3).choices("abcdef0123456789-_.'$ ", k=1100))


@functools.cache
def key_masker() -> SecretMasker:
    return SecretMasker([KEY_SECRET, LONG_TOKEN, "pass word"])


@pytest.mark.parametrize(
    "masker", [SecretMasker(LONG_SECRETS), key_masker()], ids=["short", "long"]
)
def test_any_beginning_of_a_form_is_held_until_it_completes(masker: SecretMasker) -> None:
    for form in masker.forms:
        for size in {1, 2, 3, len(form) // 2, len(form) - 2, len(form) - 1}:
            stream = masker.stream()
            assert stream.feed(b"\0" + form[:size]) == b"\0"
            assert stream.held_back == size
            assert stream.feed(form[size:]) + stream.finish() == MASK


SECRET_TEXT = st.text(st.sampled_from("abAB01 '\"$\\`!~#\n\r\té日"), min_size=4, max_size=24)


def some_bytes(forms: list[bytes]) -> st.SearchStrategy[bytes]:
    """Output made of binary noise, forms of the secrets, and beginnings of forms."""
    pieces = st.one_of(
        st.binary(max_size=40),
        st.sampled_from(forms),
        st.sampled_from(forms).flatmap(
            lambda form: st.integers(1, len(form)).map(lambda end: form[:end])
        ),
    )
    return st.lists(pieces, max_size=16).map(b"".join)


def check_any_split(masker: SecretMasker, data: st.DataObject, byte_by_byte: bool = True) -> None:
    forms = sorted(masker.forms)
    whole = data.draw(some_bytes(forms))
    cuts = data.draw(st.lists(st.integers(0, len(whole)), max_size=40))
    masked = masker.mask(whole)
    assert masked == reference_mask(forms, whole)
    assert feed_in_pieces(masker, whole, cuts) == masked
    if byte_by_byte:
        assert feed_in_pieces(masker, whole, range(len(whole))) == masked


HYPOTHESIS = settings(max_examples=200, derandomize=True, deadline=None, database=None)


@HYPOTHESIS
@given(secrets=st.lists(SECRET_TEXT, min_size=1, max_size=3), data=st.data())
def test_any_split_masks_like_the_whole(secrets: list[str], data: st.DataObject) -> None:
    check_any_split(SecretMasker(secrets), data)


@HYPOTHESIS
@given(secrets=st.lists(SECRET_TEXT, max_size=2), data=st.data())
def test_any_split_masks_like_the_whole_with_many_long_secrets(
    secrets: list[str], data: st.DataObject
) -> None:
    masker = SecretMasker(LONG_SECRETS + secrets)
    check_any_split(masker, data)


@HYPOTHESIS
@given(data=st.data())
def test_any_split_masks_like_the_whole_with_a_long_secret(data: st.DataObject) -> None:
    masker = key_masker()
    assert max(map(len, masker.forms)) > masking._INDEXED_LENGTH
    check_any_split(masker, data, byte_by_byte=False)


@HYPOTHESIS
@given(secrets=st.lists(SECRET_TEXT, min_size=1, max_size=3), data=st.data())
def test_no_form_survives_masking(secrets: list[str], data: st.DataObject) -> None:
    # No "*" in these secrets, so no form can be completed by a "***" put in its place.
    masker = SecretMasker(secrets)
    masked = masker.mask(data.draw(some_bytes(sorted(masker.forms))))
    assert not [form for form in masker.forms if form in masked]


def test_a_secret_with_many_lines_is_masked_with_the_larger_automaton() -> None:
    rng = random.Random(7)
    lines = ["".join(rng.choices("abcdefghijklmnopqrstuvwxyz0123456789", k=8)) for _ in range(900)]
    masker = SecretMasker(["\n".join(lines)])
    assert len(masker.forms) > masking._DFA_FORMS
    data = b"".join(b"noise " + line.encode() + b" noise\n" for line in lines[::7])
    assert masker.mask(data) == b"noise *** noise\n" * len(lines[::7])
    stream = masker.stream()
    pieces = [stream.feed(data[at : at + 97]) for at in range(0, len(data), 97)]
    assert b"".join([*pieces, stream.finish()]) == masker.mask(data)
