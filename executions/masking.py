"""Masking of secret values in job output, as it streams.

A run gets its secrets (secret parameters, team secret variables) as environment variables,
and a script can print them, on purpose or not: raw, but also base64-encoded, URL-encoded,
JSON-escaped, or quoted by the shell (`printf %q`, `set -x`). Every such *form* of a secret
is replaced by `***` before output is stored, streamed, searched or returned.

Forms, per secret (see `secret_forms`): the value and, for a multi-line value, each of its
lines; for each of these its base64 (standard and urlsafe, padded or not, and wrapped at 76
columns as coreutils' `base64` prints it), URL encodings, the inside of its JSON string, and
what bash 5.2 prints for it (`printf %q`, `set -x`, under a UTF-8 and the C locale) and
`shlex.quote`, also without the outer quotes, as the secret may be only part of a quoted
word. A form with a newline is also masked with CRLF line ends, as a terminal prints it.

Forms shorter than 4 bytes are never masked, secrets shorter than 4 bytes are ignored, and
so are blank lines: masking every "a", "yes" or indentation would destroy the log.

Output arrives in arbitrary pieces, so a secret may be split across them. A stream holds
back only a tail that is still the beginning of some form (never more than the longest form
minus one byte) and emits everything else at once, so output stays live. Every byte of every
occurrence of a form is masked, overlapping occurrences too, and each run of masked bytes
becomes one `***`: had the first of two overlapping forms won, the bytes of the second beyond
it would show (and an operator could choose a secret parameter that overlaps a team secret).

Speed: a regex alternation of the forms runs at ~25 MB/s, too slow for the output
pipeline. An Aho-Corasick automaton (ahocorasick-rs, in Rust) finds all of them in one pass
at 400-550 MB/s with ten secrets, and releases the GIL while it searches.
"""

from __future__ import annotations

import base64
import json
import shlex
import unicodedata
from collections.abc import Iterable, Iterator
from urllib.parse import quote, quote_plus

import ahocorasick_rs

MASK = b"***"
MIN_FORM_LENGTH = 4

# Up to this many forms the automaton is a DFA (a few MB); more use a contiguous NFA.
_DFA_FORMS = 2000
# Forms up to this length have their prefixes indexed to find the held-back tail quickly.
_INDEXED_LENGTH = 1024

# bash 5.2's tables (lib/sh/shquote.c), checked against /bin/bash in the tests.
_BACKSLASH_QUOTED = frozenset(" !\"$&'()*,;<>?[\\]^`{|}")
_SHELL_METAS = frozenset(" \t\n!\"$&'()*;<>?[\\]^`{|}")
_ANSIC_ESCAPES = {
    "\x1b": "\\E",
    "\a": "\\a",
    "\v": "\\v",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\\": "\\\\",
    "'": "\\'",
}
# What glibc's iswprint() rejects in a UTF-8 locale (identical for every code point with
# glibc 2.36 and Python 3.11's Unicode 14 tables).
_UNPRINTABLE_CATEGORIES = frozenset({"Cc", "Cn", "Cs", "Zl", "Zp"})


def _encode(text: str) -> bytes:
    # surrogatepass never raises and keeps the encoding self-synchronising, so a match never
    # starts or ends inside a character and mask_text can always decode what it masked.
    return text.encode("utf-8", "surrogatepass")


def _printable(char: str, utf8_locale: bool) -> bool:
    if char < "\x80":
        return " " <= char < "\x7f"
    return utf8_locale and unicodedata.category(char) not in _UNPRINTABLE_CATEGORIES


def _ansic_body(value: str, utf8_locale: bool) -> str:
    parts: list[str] = []
    for char in value:
        if char in _ANSIC_ESCAPES:
            parts.append(_ANSIC_ESCAPES[char])
        elif _printable(char, utf8_locale):
            parts.append(char)
        else:
            parts.extend(f"\\{byte:03o}" for byte in _encode(char))
    return "".join(parts)


def _tilde_expands(value: str, index: int) -> bool:
    return value[index] == "~" and (index == 0 or value[index - 1] in "=:")


def bash_printf_quote(value: str, utf8_locale: bool = True) -> str:
    """What bash 5.2's `printf %q` prints for `value` (in a UTF-8 or in the C locale)."""
    if not value:
        return "''"
    if not all(_printable(char, utf8_locale) for char in value):
        return f"$'{_ansic_body(value, utf8_locale)}'"
    parts: list[str] = []
    for index, char in enumerate(value):
        if (
            char in _BACKSLASH_QUOTED
            or (char == "#" and index == 0)
            or _tilde_expands(value, index)
        ):
            parts.append("\\")
        parts.append(char)
    return "".join(parts)


def bash_xtrace_quote(value: str, utf8_locale: bool = True) -> str:
    """How bash 5.2's `set -x` prints a word (or an assignment's value) equal to `value`."""
    if not value:
        return "''"
    if (
        any(char in _SHELL_METAS for char in value)
        or value[0] == "#"
        or any(_tilde_expands(value, index) for index in range(len(value)))
    ):
        if value == "'":
            return "\\'"
        return "'" + value.replace("'", "'\\''") + "'"
    if not all(_printable(char, utf8_locale) for char in value):
        return f"$'{_ansic_body(value, utf8_locale)}'"
    return value


def _shell_forms(value: str) -> Iterator[str]:
    yield shlex.quote(value)
    yield value.replace("'", "'\"'\"'")
    # Inside a longer word (`--password=$V`, `"Bearer $V"`) bash quotes the whole word, so
    # the value shows up with the inner quoting only.
    yield value.replace("'", "'\\''")
    for utf8_locale in (True, False):
        yield _ansic_body(value, utf8_locale)
        yield bash_xtrace_quote(value, utf8_locale)
        printf = bash_printf_quote(value, utf8_locale)
        yield printf
        # A leading ~ or # is only escaped at the start of the word.
        if printf.startswith(("\\~", "\\#")):
            yield printf[1:]


def _base64_forms(raw: bytes) -> Iterator[bytes]:
    standard = base64.b64encode(raw)
    urlsafe = base64.urlsafe_b64encode(raw)
    yield from (standard, standard.rstrip(b"="), urlsafe, urlsafe.rstrip(b"="))
    yield b"\n".join(standard[i : i + 76] for i in range(0, len(standard), 76))


def _value_forms(value: str) -> set[bytes]:
    raw = _encode(value)
    forms = {raw, *_base64_forms(raw)}
    forms.update(
        text.encode("ascii") for text in (quote(raw, safe=""), quote_plus(raw, safe=""), quote(raw))
    )
    forms.add(_encode(json.dumps(value)[1:-1]))
    forms.add(_encode(json.dumps(value, ensure_ascii=False)[1:-1]))
    forms.update(_encode(text) for text in _shell_forms(value))
    # A terminal (a pty with onlcr) prints every \n as \r\n.
    forms.update([form.replace(b"\n", b"\r\n") for form in forms if b"\n" in form])
    return {form for form in forms if len(form) >= MIN_FORM_LENGTH}


def _secret_values(secret: str) -> list[str]:
    """The values whose forms are masked: each long enough, non-blank line of a multi-line
    secret, and the secret itself."""
    if len(_encode(secret)) < MIN_FORM_LENGTH:
        return []
    values: list[str] = []
    if "\n" in secret:
        lines = (line.removesuffix("\r") for line in secret.split("\n"))
        values = [line for line in lines if line.strip() and len(_encode(line)) >= MIN_FORM_LENGTH]
    return [*values, secret]


def secret_forms(secret: str) -> frozenset[bytes]:
    """Every byte string that reveals `secret` and is masked in output."""
    return frozenset().union(*map(_value_forms, _secret_values(secret)))


def _prefixes_by_ending(forms: Iterable[bytes]) -> dict[bytes, tuple[tuple[int, bytes], ...]]:
    """The proper prefixes of `forms` (as length, form) by their last two bytes, longest
    first: finding the held-back tail then looks up only the buffer's last two bytes. This
    takes ~70 bytes per byte of form, which is why long forms are searched for instead."""
    found: dict[bytes, list[tuple[int, bytes]]] = {}
    for form in forms:
        for length in range(2, len(form)):
            found.setdefault(form[length - 2 : length], []).append((length, form))
    return {ending: tuple(sorted(prefixes, reverse=True)) for ending, prefixes in found.items()}


class SecretMasker:
    """Compiled once per execution from its secret values; cheap to share between threads
    (immutable). `forms` is every byte string it masks, `longest` the length of the longest.
    """

    def __init__(self, secrets: Iterable[str]) -> None:
        known: set[bytes] = set()
        for secret in dict.fromkeys(secrets):
            for value in _secret_values(secret):
                known |= _value_forms(value)
        self.forms = frozenset(known)
        self.longest = max(map(len, known), default=0)

        # One automaton finds every occurrence of every form, overlapping ones too, in one
        # pass in Rust, without holding the GIL: output is masked at hundreds of MB/s while
        # the run's other threads go on. A DFA is fastest; past a few thousand forms (a long
        # many-line secret) it grows large, and the contiguous NFA is used instead.
        implementation = (
            ahocorasick_rs.Implementation.DFA
            if len(known) <= _DFA_FORMS
            else ahocorasick_rs.Implementation.ContiguousNFA
        )
        self._forms_by_index = sorted(known)
        self._automaton = (
            ahocorasick_rs.BytesAhoCorasick(self._forms_by_index, implementation=implementation)
            if known
            else None
        )
        self._first_bytes = frozenset(form[0] for form in known)
        self._tails = _prefixes_by_ending(form for form in known if len(form) <= _INDEXED_LENGTH)
        self._long_forms = tuple(form for form in known if len(form) > _INDEXED_LENGTH)

    def __bool__(self) -> bool:
        return self._automaton is not None

    def stream(self) -> MaskedStream:
        """A stream to mask one host's stdout or stderr, fed in pieces."""
        return MaskedStream(self)

    def mask(self, data: bytes) -> bytes:
        """Masks a complete value (an error message, a stored log), holding nothing back."""
        masked, _, _ = self._mask(data, final=True)
        return masked

    def mask_text(self, text: str) -> str:
        """`mask` for text; any str, lone surrogates included, comes back intact but masked."""
        return self.mask(_encode(text)).decode("utf-8", "surrogatepass")

    def _matches(self, buffer: bytes) -> list[tuple[int, int]]:
        """All occurrences (start, end) of all forms, sorted by start, longest first."""
        if self._automaton is None:
            return []
        found = self._automaton.find_matches_as_indexes(buffer, overlapping=True)
        return sorted(((start, end) for _, start, end in found), key=lambda m: (m[0], -m[1]))

    def _held_from(self, buffer: bytes, start: int) -> int:
        """The earliest position at or after `start` from which the rest of `buffer` is a
        proper prefix of a form (so a later piece may complete it), else len(buffer)."""
        size = len(buffer)
        if size - start < 2:
            return size - 1 if start < size and buffer[-1] in self._first_bytes else size
        held = size
        for length, form in self._tails.get(buffer[-2:], ()):
            if length <= size - start and form.startswith(buffer[size - length :]):
                held = size - length
                break
        for form in self._long_forms:
            # Only a start before `held` (and two bytes before the end) would change it.
            low, end = max(start, size - len(form) + 1), min(held, size - 1) + 1
            at = buffer.find(form[:2], low, end)
            while at >= 0 and not form.startswith(buffer[at:]):
                at = buffer.find(form[:2], at + 1, end)
            if at >= 0:
                held = at
        if held == size and buffer[-1] in self._first_bytes:
            return size - 1
        return held

    def _mask(
        self, buffer: bytes, final: bool, emitted: int = 0, after_mask: bool = False
    ) -> tuple[bytes, int, bool]:
        """Masks `buffer[emitted:]` up to the held-back tail.

        `buffer[:emitted]` was emitted by the previous call (its end, kept as context), which
        ended with a masked span if `after_mask`: a form that overlaps that span extends it.
        Returns the output, where the held-back tail starts (len(buffer) when `final`, as
        nothing more can complete a form), and whether the output ends with a masked span.

        Every byte of every occurrence of every form is masked, and each run of such bytes
        becomes one MASK: of two overlapping forms neither can leave the other's bytes
        bare (an operator's own secret parameter must not unmask part of a team secret).
        """
        size = len(buffer)
        parts: list[bytes] = []
        cursor = emitted  # everything before it is decided
        masking = after_mask  # whether `cursor` ends a masked span
        # Where a form may begin that later bytes could complete. Inside a masked span that
        # span is emitted anyway, but what follows it waits.
        held = size if final else self._held_from(buffer, 0)
        for start, end in self._matches(buffer):
            if end <= cursor:
                continue
            if masking and start <= cursor:
                cursor = end  # the span grows, still one MASK
                continue
            if start >= held:
                break
            parts += (buffer[cursor:start], MASK)
            cursor, masking = end, True
        held = max(held, cursor)
        if not parts and cursor == emitted and held == size:
            return buffer[emitted:], size, after_mask and emitted == size
        parts.append(buffer[cursor:held])
        return b"".join(parts), held, masking and held == cursor


class MaskedStream:
    """Masks one stream (one host's stdout or stderr) fed in arbitrary pieces."""

    def __init__(self, masker: SecretMasker) -> None:
        self._masker = masker
        self._pending = b""
        # The end of what was emitted, when it ended with a masked span: a form starting
        # inside that span may still be completed by what comes, and then extends it.
        self._context = b""

    def feed(self, data: bytes) -> bytes:
        """Returns the masked bytes that are safe to emit now."""
        return self._emit(self._context + self._pending + data, final=False)

    def finish(self) -> bytes:
        """The stream ended: returns whatever was held back, masked."""
        return self._emit(self._context + self._pending, final=True)

    def _emit(self, buffer: bytes, final: bool) -> bytes:
        emitted = len(self._context)
        masked, held, after_mask = self._masker._mask(buffer, final, emitted, emitted > 0)
        self._pending = buffer[held:]
        # A form is at most `longest` bytes: it cannot start further back than this.
        start = max(0, held - self._masker.longest + 1)
        self._context = buffer[start:held] if after_mask else b""
        return masked

    @property
    def held_back(self) -> int:
        """How many bytes wait for the next piece (always less than the longest form)."""
        return len(self._pending)
