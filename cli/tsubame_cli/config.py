"""Where the server is and which token to show it: flags, then the environment, then a file.

The file is TOML with `url` and `token` keys, at $TSUBAME_CONFIG, else
$XDG_CONFIG_HOME/tsubame/config.toml (~/.config/tsubame/config.toml).
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path


class UsageError(Exception):
    """The command line or the configuration is wrong: exit 2 with this message."""


@dataclass(frozen=True)
class Config:
    url: str
    token: str


def config_path() -> Path:
    if explicit := os.environ.get("TSUBAME_CONFIG"):
        return Path(explicit)
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base) / "tsubame" / "config.toml"


def _file_settings() -> dict[str, str]:
    path = config_path()
    try:
        with path.open("rb") as file:
            data = tomllib.load(file)
    except FileNotFoundError:
        return {}
    except (OSError, tomllib.TOMLDecodeError) as exc:
        # Only the reason: the file's text may hold the token.
        raise UsageError(f"cannot read {path}: {type(exc).__name__}") from None
    return {key: str(data[key]) for key in ("url", "token") if key in data}


def load(url: str | None, token: str | None) -> Config:
    url = url or os.environ.get("TSUBAME_URL")
    token = token or os.environ.get("TSUBAME_TOKEN")
    if not (url and token):
        file = _file_settings()
        url, token = url or file.get("url"), token or file.get("token")
    if not url:
        raise UsageError(f"no server: set TSUBAME_URL, --url, or url in {config_path()}")
    if not token:
        raise UsageError(f"no API token: set TSUBAME_TOKEN, --token, or token in {config_path()}")
    if not url.startswith(("http://", "https://")):
        raise UsageError(f"the server URL must start with http:// or https://: {url}")
    return Config(url.rstrip("/"), token.strip())
