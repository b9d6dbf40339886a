"""Files replaced atomically: write a temporary file, fsync, rename, fsync the folder.

A process killed while writing leaves the previous complete file, never half of a new one.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from mfed.interrupts import uninterruptible


def replace_atomically(path: Path, write: Callable[[IO[bytes]], object]) -> None:
    """Write ``path`` through ``write(file)`` into a temporary file, fsync it, then rename it over ``path``.

    A stop signal (Ctrl-C) arriving meanwhile takes effect once the file is complete.
    """
    with uninterruptible():
        _replace(path, write)


def _replace(path: Path, write: Callable[[IO[bytes]], object]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)  # the rename itself survives a power cut
    finally:
        os.close(folder)


def write_json(obj: Any, path: Path, sort_keys: bool = True) -> None:
    """Write ``obj`` as indented JSON, atomically; ``sort_keys=False`` keeps the mappings' order."""
    data = json.dumps(obj, indent=1, sort_keys=sort_keys).encode()
    replace_atomically(path, lambda f: f.write(data))
