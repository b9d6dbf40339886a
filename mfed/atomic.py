"""Files replaced atomically: write a temporary file, fsync, rename, fsync the folder.

A process killed while writing leaves the previous complete file, never half of a new one.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from mfed.interrupts import uninterruptible


def replace_atomically(path: Path, write: Callable[[IO[bytes]], object]) -> None:
    """Write ``path`` through ``write(file)`` into a temporary file, fsync it, then rename it over ``path``.

    A stop signal (Ctrl-C) arriving meanwhile takes effect once the file is complete.
    """
    with uninterruptible():
        try:
            _replace(path, write)
        except OSError as err:
            raise WriteError(f"{path} could not be written: {why_not_written(path.parent, err)}") from err


class WriteError(OSError):
    """A file the run keeps could not be written; the message names it and why (a full disk, a read-only folder)."""


def why_not_written(folder: Path, cause: BaseException | str) -> str:
    """A write's failure in words: the device full, the folder read-only, or the error itself."""
    code = getattr(cause, "errno", None)
    if code == errno.ENOSPC or (folder.exists() and shutil.disk_usage(folder).free < 1 << 20):
        return f"the device holding {folder} is full ({shutil.disk_usage(folder).free} bytes free): free space"
    if code in (errno.EROFS, errno.EACCES, errno.EPERM):
        return f"{folder} cannot be written (read-only or not yours): make it writable or resume into a copy"
    text = str(cause).strip().splitlines()
    return text[0] if text else type(cause).__name__


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
