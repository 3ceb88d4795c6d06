"""Watching every response of the test suite for a stored secret.

The root conftest installs one `SecretWatch` per test. It learns secrets as they are written
(server credentials and their ciphertexts, API token hashes and texts) and checks each body
the Django test client (and so DRF's APIClient) gets back, and each schemathesis response.
It never queries the database, so tests that count queries count only their own.

An API token's text is meant to be shown once, to whoever created it: in the response to the
request that created it (or, when that response is a redirect, as the admin does, in the next
page that client gets). Anywhere else, and any other secret anywhere, fails the test.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

# Shorter values cannot be told apart from ordinary data (a password "pw" is also in "npw");
# they are only caught as a whole JSON string value.
MIN_SUBSTRING_LENGTH = 8


class SecretLeak(AssertionError):
    pass


@dataclass
class SecretWatch:
    secrets: dict[str, str] = field(default_factory=dict)  # value: what it is
    # Per client: token texts created by its request, not shown to it yet.
    shown_once: dict[object, set[str]] = field(default_factory=dict)
    requester: object | None = None

    @contextmanager
    def request_by(self, client: object) -> Iterator[None]:
        """Tokens created while this runs are `client`'s to see once."""
        self.requester = client
        try:
            yield
        finally:
            self.requester = None

    def remember(self, value: object, what: str) -> None:
        if isinstance(value, str) and value:
            self.secrets.setdefault(value, what)

    def remember_private_key(self, key: object, what: str) -> None:
        if not isinstance(key, str):
            return
        self.remember(key, what)
        for line in key.splitlines():
            line = line.strip()
            if line and not line.startswith("-----") and ":" not in line:
                self.remember(line, f"a line of {what}")

    def remember_token_text(self, text: str, what: str = "an API token") -> None:
        """A secret shown once to its creator: an API token's text, a webhook's secret."""
        self.remember(text, f"{what}'s text")
        self.remember(text.split("_", 2)[-1], f"{what}'s random part")
        if self.requester is not None:
            self.shown_once.setdefault(self.requester, set()).add(text)

    def found_in(self, body: bytes) -> dict[str, str]:
        """The remembered secrets that appear in `body`."""
        text = body.decode("utf-8", errors="replace")
        found = {
            value: what
            for value, what in self.secrets.items()
            if len(value) >= MIN_SUBSTRING_LENGTH and value in text
        }
        try:
            document = json.loads(text)
        except ValueError:
            return found
        for value in _strings(document):
            if value in self.secrets:
                found[value] = self.secrets[value]
        return found

    def check(self, body: bytes, *, status: int, where: str, client: object = None) -> None:
        """Fail if `body` shows a secret (other than a new token's text to its creator, once)."""
        found = self.found_in(body)
        pending = self.shown_once.pop(client, set())
        # A new token's text, and its random part with it.
        allowed = {value for value in found if any(value in token for token in pending)}
        if 300 <= status < 400:
            # Not shown yet: the page the client is sent to may show it.
            self.shown_once[client] = {token for token in pending if token not in allowed}
        leaked = {value: what for value, what in found.items() if value not in allowed}
        if leaked:
            kinds = ", ".join(sorted(set(leaked.values())))
            raise SecretLeak(f"{where} shows a stored secret ({kinds}): {sorted(leaked)}")


def _strings(document: Any) -> list[str]:
    if isinstance(document, str):
        return [document]
    if isinstance(document, dict):
        return [s for value in document.values() for s in _strings(value)]
    if isinstance(document, list):
        return [s for item in document for s in _strings(item)]
    return []
