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


def check_uri(key: str, uri: str, write: bool) -> None:
    """A storage URI pyarrow understands, whose store answers, and (``write``) that takes a file.

    Checked before W&B or any folder starts; the probe file (``write``) is removed at once.
    """
    import pyarrow.fs as pafs

    try:
        fs, path = pafs.FileSystem.from_uri(uri)  # may already ask the store (an S3 bucket's region)
    except OSError as err:
        raise _unreachable(key, uri, err, write) from None
    except ValueError as err:  # pyarrow.ArrowInvalid: a scheme or option it does not know
        raise ConfigError(
            f"{key}={uri}: {str(err).splitlines()[0]}; give a URI pyarrow.fs understands (s3://, gs://, "
            "hdfs://, file://) or a local folder"
        ) from None
    try:
        fs.get_file_info(path)
        if write:
            fs.create_dir(path, recursive=True)
            probe = f"{path.rstrip('/')}/.mfed-write-probe"
            with fs.open_output_stream(probe) as f:
                f.write(b"mfed")
            fs.delete_file(probe)
    except (OSError, ValueError) as err:
        raise _unreachable(key, uri, err, write) from None


def _unreachable(key: str, uri: str, err: BaseException, write: bool) -> ConfigError:
    return ConfigError(
        f"{key}={uri} cannot be {'written' if write else 'read'}: {str(err).splitlines()[0]}; check the "
        "address, the credentials and the URI's options (e.g. ?endpoint_override=host:port&scheme=http)"
    )
