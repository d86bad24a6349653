"""Where the client's URL, key and secret come from: arguments, else LABELSTORE_URL / LABELSTORE_KEY /
LABELSTORE_SECRET, else a profile in the user's config file (`labelstore login` writes it, mode 0600).
Each of the three is looked up on its own, so an argument or variable overrides one member of a profile."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import click

from labelstore_client.errors import LabelStoreError

ENV = {"url": "LABELSTORE_URL", "key": "LABELSTORE_KEY", "secret": "LABELSTORE_SECRET"}
DEFAULT_PROFILE = "default"


def config_path() -> Path:
    """LABELSTORE_CONFIG, else config.json in the user's config directory (XDG on Linux, Application Support
    on macOS, %APPDATA% on Windows)."""
    explicit = os.environ.get("LABELSTORE_CONFIG")
    return Path(explicit) if explicit else Path(click.get_app_dir("labelstore")) / "config.json"


@dataclass
class Credentials:
    url: str
    key: str
    secret: str = field(repr=False)


def _profiles(path: Path) -> dict:
    try:
        return json.loads(path.read_text()).get("profiles", {})
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise LabelStoreError(None, "unreadable configuration", f"{path}: {type(exc).__name__}") from None


def resolve(url: str | None = None, key: str | None = None, secret: str | None = None,
            profile: str | None = None) -> Credentials:
    given = {"url": url, "key": key, "secret": secret}
    found = {name: value or os.environ.get(ENV[name]) for name, value in given.items()}
    if not all(found.values()):
        name = profile or os.environ.get("LABELSTORE_PROFILE") or DEFAULT_PROFILE
        stored = _profiles(config_path()).get(name, {})
        found = {k: v or stored.get(k) for k, v in found.items()}
    missing = [ENV[k] for k, v in found.items() if not v]
    if missing:
        raise LabelStoreError(None, "not configured",
                              f"no {', '.join(missing)}: pass them, set them, or run `labelstore login`")
    return Credentials(found["url"].rstrip("/"), found["key"], found["secret"])


def save_profile(credentials: Credentials, profile: str = DEFAULT_PROFILE) -> Path:
    """Writes the profile into the config file, readable by its owner only (0600, set before anything is written)."""
    path = config_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    profiles = _profiles(path)
    profiles[profile] = {"url": credentials.url, "key": credentials.key, "secret": credentials.secret}
    temporary = path.with_name(path.name + ".tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as sink:
        os.fchmod(sink.fileno(), 0o600) if hasattr(os, "fchmod") else None
        json.dump({"profiles": profiles}, sink, indent=2)
    os.replace(temporary, path)
    return path
