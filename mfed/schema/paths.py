"""Checks of the paths a config names: ``resume`` exists, ``out_dir`` / ``storage`` can be written."""

from __future__ import annotations

import os
from pathlib import Path

from mfed.schema.errors import ConfigError, MissingRunError

SYSTEM_DIRS = ("proc", "sys")


def check_resume(resume: str) -> None:
    """``resume`` must name an existing run directory or checkpoint file."""
    if not os.path.exists(os.path.expanduser(resume)):
        hint = f"no checkpoint at {resume}: give a run's output directory or its checkpoint.pt"
        raise MissingRunError(f"resume: no run at {resume} ({hint})")


def check_writable(key: str, value: str) -> None:
    """``value`` (a folder, maybe not there yet) can be created and written: not under /proc or /sys."""
    path = Path(os.path.abspath(os.path.expanduser(value)))
    for p in (path, Path(os.path.realpath(path))):
        if p.parts[1:2] and p.parts[1] in SYSTEM_DIRS:
            why = f"/{p.parts[1]} is a kernel file system"
            raise ConfigError(f"{key}={value} cannot be written: {why}; choose another folder")
    existing = path
    while not os.path.exists(existing) and existing != existing.parent:
        existing = existing.parent
    if not os.path.isdir(existing):
        raise ConfigError(f"{key}={value} cannot be written: {existing} is a file, not a folder; choose another folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"{key}={value} cannot be written: no write permission in {existing}; choose another folder")
