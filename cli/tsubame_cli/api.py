"""The server's REST API over HTTP(S), with the standard library only."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

from tsubame_cli.config import Config

TIMEOUT_SECONDS = 30


class ApiError(Exception):
    """A request that failed: exit 2 with this one-line message."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status  # None: no answer from the server


def one_line(errors: Any, prefix: str = "") -> list[str]:
    """DRF's nested field errors as `field.sub: message` items."""
    if isinstance(errors, dict):
        return [
            item
            for key, value in errors.items()
            for item in one_line(value, f"{prefix}{key}." if key != "non_field_errors" else prefix)
        ]
    if isinstance(errors, list):
        return [item for value in errors for item in one_line(value, prefix)]
    return [f"{prefix.rstrip('.')}: {errors}" if prefix else str(errors)]


def error_message(status: int, body: bytes) -> str:
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        return f"the server answered HTTP {status}"
    if "errors" in data:
        return "; ".join(one_line(data["errors"]))
    return str(data.get("detail") or f"the server answered HTTP {status}")


class Api:
    def __init__(self, config: Config) -> None:
        self.url = config.url
        self._token = config.token

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._token}", "Accept": "application/json"}

    def _open(self, method: str, path: str, body: Any = None, **query: Any) -> Any:
        query = {key: value for key, value in query.items() if value is not None}
        url = self.url + path + (f"?{urllib.parse.urlencode(query, doseq=True)}" if query else "")
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(url, data=data, method=method, headers=self.headers)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            return urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS)
        except urllib.error.HTTPError as exc:
            with exc:
                message = error_message(exc.code, exc.read())
            if exc.code == 401:
                message = f"the server refused the token: {message}"
            raise ApiError(message, exc.code) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ApiError(f"cannot reach {self.url}: {reason}") from None

    def request(self, method: str, path: str, body: Any = None, **query: Any) -> Any:
        with self._open(method, path, body, **query) as response:
            return json.load(response)

    def get(self, path: str, **query: Any) -> Any:
        return self.request("GET", path, **query)

    def post(self, path: str, body: Any = None) -> Any:
        return self.request("POST", path, body if body is not None else {})

    def stream(self, path: str, **query: Any) -> Any:
        """The response of a GET, to read its body a block at a time."""
        return self._open("GET", path, **query)

    def every(self, path: str, **query: Any) -> Iterator[dict[str, Any]]:
        """Every item of a paginated list, a page at a time."""
        page = 1
        while True:
            data = self.get(path, page=page, page_size=500, **query)
            yield from data["results"]
            if not data.get("next"):
                return
            page += 1

    def websocket_url(self, path: str) -> str:
        return "ws" + self.url.removeprefix("http") + path
