"""Where a run writes, durably and alone.

- ``out_dir`` defaults to ``<storage>/<date_time>_<run name>``; ``storage`` defaults to
  ``$MFED_STORAGE``, else ``~/mfed-runs``: never inside a Ray job's working directory, which
  lives in Ray's session temp dir and vanishes with the cluster. A resumed run writes into the
  run it resumes.
- ``storage``/``out_dir`` may be a URI that ``pyarrow.fs`` understands (``s3://``, ``gs://``,
  ``hdfs://``, ``file://``): the run then writes to a local staging folder and copies it to the
  URI after every round and at the end (:class:`StorageSync`), as Ray Tune does with its
  ``storage_path``.
- A lock file keeps a second run out of a folder in use; a dead run's lock is taken over. A run
  bound for a URI also holds a lock object at the URI (:class:`UriLock`: the holder's host and
  process, refreshed every round), so a second writer is refused on any machine, and removes it
  when it ends; resuming a URI checks both locks before anything is copied.
- A fresh run refuses a folder that already holds files.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import time
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

if TYPE_CHECKING:
    from mfed.federation.driver import Driver, Row

log = logging.getLogger(__name__)

LOCK_NAME = ".mfed.lock"
STAGING_ENV = "MFED_STAGING"
DEFAULT_STORAGE = "~/mfed-runs"  # configs/config.yaml's default when $MFED_STORAGE is unset


def is_uri(location: str) -> bool:
    """Whether ``location`` names a filesystem by scheme (``s3://...``) rather than a local path."""
    return "://" in location


def join(location: str, *names: str) -> str:
    """``names`` under the folder ``location``: a path, or a URI whose query string stays at its end.

    ``s3://bucket/runs?endpoint_override=host:9000`` + ``run`` is
    ``s3://bucket/runs/run?endpoint_override=host:9000`` (pyarrow reads its options from the query).
    """
    if not is_uri(location):
        return str(Path(location, *names))
    parts = urlsplit(location)
    path = "/".join([parts.path.rstrip("/"), *names])
    return urlunsplit(parts._replace(path=path))


def staging_dir(uri: str) -> Path:
    """The local folder a run bound for ``uri`` writes to: ``$MFED_STAGING`` or ``~/.cache/mfed/staging``."""
    root = Path(os.environ.get(STAGING_ENV) or Path.home() / ".cache" / "mfed" / "staging")
    return root / hashlib.sha1(uri.encode()).hexdigest()[:16]


def default_out_dir(storage: str, name: str, now: datetime | None = None) -> str:
    """``<storage>/<date_time>_<name>``, ``~`` expanded for local storage."""
    stamp = (now or datetime.now()).strftime("%Y-%m-%d_%H-%M-%S")
    if is_uri(storage):
        return join(storage, f"{stamp}_{name}")
    return str(Path(storage).expanduser().absolute() / f"{stamp}_{name}")


def run_dir_of(resume: str) -> str:
    """The run folder a ``resume=`` value names: the folder itself, or the one holding its checkpoint.pt."""
    if is_uri(resume):
        parts = urlsplit(resume)
        return urlunsplit(parts._replace(path=parts.path.rstrip("/")))
    path = Path(resume).expanduser().absolute()
    return str(path.parent if path.suffix == ".pt" else path)


def resolve_out_dir(out_dir: str | None, storage: str, name: str, resume: str | None) -> str:
    """The run's output location: ``out_dir`` as given, else the resumed run's, else a new one in ``storage``."""
    if out_dir:
        return out_dir if is_uri(out_dir) else str(Path(out_dir).expanduser().absolute())
    if resume:
        return run_dir_of(resume)
    return default_out_dir(storage, name)


def _filesystem(location: str) -> tuple[Any, str]:
    import pyarrow.fs as pafs

    return pafs.FileSystem.from_uri(location) if is_uri(location) else (pafs.LocalFileSystem(), location)


def _copy(source: str, destination: str) -> None:
    """Copy every file of the folder ``source`` into ``destination``, except a lock (each side holds its own)."""
    import pyarrow.fs as pafs

    (src_fs, src), (dst_fs, dst) = _filesystem(source), _filesystem(destination)
    dst_fs.create_dir(dst, recursive=True)
    files = [f for f in src_fs.get_file_info(pafs.FileSelector(src, recursive=True)) if f.type == pafs.FileType.File]
    for info in files:
        relative = info.path[len(src.rstrip("/")) + 1 :]
        if relative.rsplit("/", 1)[-1] == LOCK_NAME:
            continue
        target = f"{dst.rstrip('/')}/{relative}"
        dst_fs.create_dir(target.rsplit("/", 1)[0], recursive=True)
        pafs.copy_files(info.path, target, source_filesystem=src_fs, destination_filesystem=dst_fs)


def read_text(location: str) -> str | None:
    """The text of one file at a local path or a storage URI, or ``None`` when there is none."""
    fs, path = _filesystem(location)
    try:
        with fs.open_input_stream(path) as f:
            return f.read().decode()
    except (OSError, ValueError):
        return None


def fetch(uri: str) -> Path:
    """Copy the run at ``uri`` into its staging folder (to resume it) and return that folder.

    Raises:
        ValueError: A live run writes ``uri`` (its lock at the URI, or its staging folder's here).
        FileNotFoundError: Nothing can be read at ``uri``.

    """
    local = staging_dir(uri)
    UriLock(uri).check()
    RunLock(local).check()  # the live writer's staging folder on this machine: never copied over
    local.mkdir(parents=True, exist_ok=True)
    try:
        _copy(uri, str(local))
    except (OSError, ValueError) as err:
        raise FileNotFoundError(f"resume: cannot read the run at {uri}: {err}") from None
    return local


class StorageSync:
    """Copies the local staging folder to the run's URI after every round and at the end."""

    def __init__(self, local: str | Path, uri: str) -> None:
        self.local, self.uri = Path(local), uri

    def sync(self) -> None:
        """Copy every file of the staging folder to the URI (:func:`fetch` drops the lock's copy)."""
        _copy(str(self.local), self.uri)

    def on_start(self, driver: Driver) -> None:
        """Check the destination can be written before the first round."""
        self.local.mkdir(parents=True, exist_ok=True)
        self.sync()

    def on_round_end(self, driver: Driver, row: Row) -> None:
        """Copy this round's files."""
        self.sync()

    def on_end(self, driver: Driver) -> None:
        """Copy the final files (summary.json, W&B's)."""
        self.sync()


def check_fresh(path: Path, resuming: bool) -> None:
    """A new run needs an empty (or absent) folder; a resumed one writes into its own run."""
    if resuming or not path.is_dir():
        return
    held = sorted(p.name for p in path.iterdir() if p.name != LOCK_NAME)
    if held:
        listed = ", ".join(held[:4]) + (" ..." if len(held) > 4 else "")
        raise ValueError(
            f"out_dir={path} already holds files ({listed}): give a new out_dir, or resume={path} to continue "
            "the run in it"
        )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _read_lock(lock: Path) -> dict[str, Any]:
    try:
        return json.loads(lock.read_text())
    except (OSError, ValueError):
        return {}


def _holder() -> dict[str, Any]:
    """The current process as a lock records it: pid, host, since when."""
    return {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%d %H:%M:%S")}


def _in_use(where: str, other: dict[str, Any], remove: str) -> ValueError:
    who = f"process {other.get('pid', '?')} on {other.get('host', '?')} since {other.get('since', '?')}"
    return ValueError(
        f"out_dir={where} is in use by another run ({who}): give another out_dir, or wait for that run; if it "
        f"is gone, remove {remove}"
    )


class RunLock:
    """``<path>/.mfed.lock`` held while a run writes ``path``: a second run is refused, naming the first.

    The lock records the host and process id. A lock left by a process that no longer runs on
    this host (a killed run) is taken over; one from another host is refused with the path to
    remove once that run is known to be gone. As a run callback it is released when the run ends.
    """

    def __init__(self, path: Path) -> None:
        self.path = path / LOCK_NAME
        self.mine = _holder()

    def _gone(self, other: dict[str, Any]) -> bool:
        """Whether the lock ``other`` was left by a process of this host that no longer runs."""
        pid = other.get("pid")
        return other.get("host") == self.mine["host"] and isinstance(pid, int) and not _alive(pid)

    def check(self) -> None:
        """Raise ``ValueError`` naming the run that holds the lock, if a live one does."""
        other = _read_lock(self.path)
        if other and not self._gone(other):
            raise _in_use(str(self.path.parent), other, str(self.path))

    def _take(self) -> bool:
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as f:
            json.dump(self.mine, f)
        return True

    def acquire(self) -> None:
        """Take the lock, or raise ``ValueError`` naming the run that holds it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self._take():
            return
        other = _read_lock(self.path)
        if self._gone(other):
            log.warning("taking over the lock of a run that is gone (pid %s)", other["pid"])
            self.path.unlink(missing_ok=True)
            if self._take():
                return
            other = _read_lock(self.path)
        raise _in_use(str(self.path.parent), other, str(self.path))

    def release(self) -> None:
        """Remove the lock if this process holds it."""
        if _read_lock(self.path).get("pid") == self.mine["pid"]:
            self.path.unlink(missing_ok=True)

    def on_start(self, driver: Driver) -> None:
        """Held since :meth:`acquire`."""

    def on_round_end(self, driver: Driver, row: Row) -> None:
        """Still held."""

    def on_end(self, driver: Driver) -> None:
        """Release it."""
        self.release()


class UriLock:
    """``<uri>/.mfed.lock``: held while a run writes the storage URI ``uri``, one writer on any machine.

    The lock object records the holder's host and process and when it last wrote a round
    (``heartbeat``, refreshed every round). A second run is refused while the holder is alive: on
    this host while its process runs, on another while its heartbeat is younger than
    :attr:`STALE_S`; a stale lock is taken over. Object stores have no exclusive create, so two
    runs taking the same URI at the same instant can both write it: each round checks that the
    lock still names this run, and a run that lost it stops. A run that ends removes its lock.
    """

    STALE_S = 24 * 3600.0

    def __init__(self, uri: str) -> None:
        self.uri, self.location, self.mine = uri, join(uri, LOCK_NAME), _holder()

    def holder(self) -> dict[str, Any]:
        """The lock's record (empty when there is none)."""
        text = read_text(self.location)
        try:
            return json.loads(text) if text else {}
        except ValueError:
            return {}

    def _ours(self, other: dict[str, Any]) -> bool:
        return other.get("pid") == self.mine["pid"] and other.get("host") == self.mine["host"]

    def _alive(self, other: dict[str, Any]) -> bool:
        pid = other.get("pid")
        if other.get("host") == self.mine["host"]:
            return not isinstance(pid, int) or _alive(pid)
        return time.time() - float(other.get("heartbeat", 0.0)) < self.STALE_S

    def check(self) -> None:
        """Raise ``ValueError`` naming the run that writes the URI, if a live one other than this process does."""
        other = self.holder()
        if other and not self._ours(other) and self._alive(other):
            raise _in_use(self.uri, other, self.location)

    def _write(self) -> None:
        fs, path = _filesystem(self.location)
        fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
        with fs.open_output_stream(path) as f:
            f.write(json.dumps({**self.mine, "heartbeat": time.time()}).encode())

    def acquire(self) -> None:
        """Take the lock (taking over a stale one), or raise ``ValueError`` naming the live holder."""
        self.check()
        self._write()

    def release(self) -> None:
        """Remove the lock if this process holds it."""
        if self._ours(self.holder()):
            fs, path = _filesystem(self.location)
            fs.delete_file(path)

    def on_start(self, driver: Driver) -> None:
        """Held since :meth:`acquire`."""

    def on_round_end(self, driver: Driver, row: Row) -> None:
        """Refresh the heartbeat; stop the run if another run took the lock."""
        other = self.holder()
        if other and not self._ours(other):
            raise RuntimeError(f"another run took over {self.uri} ({other.get('host')}, pid {other.get('pid')})")
        self._write()

    def on_end(self, driver: Driver) -> None:
        """Release it."""
        self.release()
