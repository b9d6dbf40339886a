"""The config error types, and how their messages name keys and quote values."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any


class ConfigError(ValueError):
    """A config value that cannot work; the message (one line) names the key, the value and the fix."""


class MissingRunError(ConfigError, FileNotFoundError):
    """``resume`` names no file or folder (a FileNotFoundError too, as a missing checkpoint is)."""


def did_you_mean(name: str, known: Iterable[str], cutoff: float = 0.6) -> str | None:
    """The known name closest to ``name`` (:func:`difflib.get_close_matches`), or None when none is close."""
    match = difflib.get_close_matches(name, list(known), n=1, cutoff=cutoff)
    return match[0] if match else None


def join_key(path: str, key: Any) -> str:
    """The dotted key of ``key`` under ``path`` (``key`` itself at the top level)."""
    return f"{path}.{key}" if path else str(key)


def quote(value: Any) -> str:
    """A bad value as the message quotes it: strings in quotes, the rest as an override writes it."""
    return show(repr(value)) if isinstance(value, str) else show(value)


def show(value: Any, limit: int = 60) -> str:
    """A value as a command-line override would write it."""
    if value is None or isinstance(value, bool):
        text = {None: "null", True: "true", False: "false"}[value]
    else:
        text = str(value).replace(", ", ",").replace("'", "") if isinstance(value, list | dict) else str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def first_line(err: BaseException) -> str:
    """The first non-blank line of an exception's message; its type's name when it has none."""
    return next((line.strip() for line in str(err).splitlines() if line.strip()), type(err).__name__)
