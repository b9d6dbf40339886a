"""Reader for W&B offline run files (``wandb/offline-run-*/run-<id>.wandb``).

wandb 0.31 ships no Python reader for them, yet tests and report tooling must assert what a run
logged without uploading it. Format, as checked on files written by wandb 0.31: a 7-byte header
``<4sHB`` (``b":W&B"``, ``0xBEE1``, version 0), then a LevelDB log of 32 KiB blocks counted from
the file start. Each record has a ``<IHB`` header (crc32, length, type FULL/FIRST/MIDDLE/LAST);
records too big for their block are split into fragments; a block's last < 7 bytes are padding.
The crc is ``crc32(payload, crc32(bytes([type])))`` with no LevelDB masking. Each reassembled
payload is a ``wandb.proto.wandb_internal_pb2.Record``.
"""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

_FILE_HEADER = struct.Struct("<4sHB")
_MAGIC, _IDENT, _VERSION = b":W&B", 0xBEE1, 0
_RECORD_HEADER = struct.Struct("<IHB")
_BLOCK = 32 * 1024
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


@dataclass(frozen=True)
class OfflineRun:
    """What one offline run logged.

    Attributes:
        run_id: The run's id.
        project: W&B project.
        group: Run group, ``''`` when unset.
        name: Display name, ``''`` when unset.
        history: One dict per ``run.log`` row (including ``_step``, ``_runtime``, ``_timestamp``).
        summary: The final summary: summary updates (and removals) merged in order.
        config: The final config: config updates merged in order (includes W&B's ``_wandb``).

    """

    run_id: str
    project: str
    group: str
    name: str
    history: list[dict[str, Any]]
    summary: dict[str, Any]
    config: dict[str, Any]


def find_offline_runs(root: str | Path) -> list[Path]:
    """Find every offline run file under ``root``.

    Args:
        root: A directory, e.g. a run's ``out_dir`` or its ``wandb`` folder.

    Returns:
        The ``run-*.wandb`` files found recursively, sorted.

    """
    return sorted(Path(root).rglob("run-*.wandb"))


def iter_records(path: str | Path) -> Iterator[Any]:
    """Yield the ``wandb_internal_pb2.Record`` messages of a run file in written order.

    Args:
        path: A ``run-<id>.wandb`` file.

    Raises:
        ValueError: If the file is not a W&B run file, or a record is corrupt or truncated.

    """
    from wandb.proto import wandb_internal_pb2  # lazy: importing wandb costs ~0.5 s

    pb: Any = wandb_internal_pb2  # its messages come from a star import that mypy cannot see
    path = Path(path)
    for offset, payload in _iter_payloads(path):
        record = pb.Record()
        try:
            record.ParseFromString(payload)
        except Exception as err:  # protobuf's DecodeError; the crc passed, so the writer erred
            raise ValueError(f"{path}: undecodable record at offset {offset}: {err}") from err
        yield record


def read_run_file(path: str | Path) -> OfflineRun:
    """Decode an offline run file (call ``wandb.teardown()`` first: ``finish()`` does not flush).

    Args:
        path: A ``run-<id>.wandb`` file.

    Returns:
        The decoded run. Nested keys (``wandb.log({"a": {"b": 1}})``) become nested dicts.

    Raises:
        ValueError: If the file is not a W&B run file, or a record is corrupt or truncated.

    """
    meta = {"run_id": "", "project": "", "group": "", "name": ""}
    history: list[dict[str, Any]] = []
    summary: dict[str, Any] = {}
    config: dict[str, Any] = {}
    for record in iter_records(path):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run = record.run
            meta = {"run_id": run.run_id, "project": run.project, "group": run.run_group, "name": run.display_name}
            _merge(config, run.config)
            _merge(summary, run.summary)
        elif kind == "config":
            _merge(config, record.config)
        elif kind == "summary":
            _merge(summary, record.summary)
        elif kind == "history":
            row: dict[str, Any] = {}
            for item in record.history.item:
                _set_path(row, _item_path(item), _item_value(item))
            if record.history.HasField("step"):
                row.setdefault("_step", record.history.step.num)
            history.append(row)
    config = {key: _unwrap(value) for key, value in config.items()}
    return OfflineRun(history=history, summary=summary, config=config, **meta)


def _iter_payloads(path: Path) -> Iterator[tuple[int, bytes]]:
    """Yield ``(offset of first fragment, payload)`` per logical record, checking every crc."""
    with path.open("rb") as f:
        _check_header(path, f.read(_FILE_HEADER.size))
        offset, start = _FILE_HEADER.size, 0
        parts: list[bytes] = []
        while True:
            room = _BLOCK - offset % _BLOCK
            if room < _RECORD_HEADER.size:  # too small for a header: the writer padded it
                offset += len(f.read(room))
                continue
            length, kind, payload = _read_fragment(path, f, offset, room)
            if kind is None:
                break
            if kind in (_FULL, _FIRST) and parts or kind in (_MIDDLE, _LAST) and not parts:
                raise ValueError(f"{path}: fragment of type {kind} out of order at offset {offset}")
            if kind in (_FULL, _FIRST):
                start = offset
            parts.append(payload)
            offset += _RECORD_HEADER.size + length
            if kind in (_FULL, _LAST):
                yield start, b"".join(parts)
                parts = []
        if parts:
            raise ValueError(f"{path}: truncated record at offset {start} (file ends mid-record)")


def _read_fragment(path: Path, f: BinaryIO, offset: int, room: int) -> tuple[int, int | None, bytes]:
    """Read one fragment at ``offset``; ``kind`` is ``None`` at a clean end of file."""
    head = f.read(_RECORD_HEADER.size)
    if not head:
        return 0, None, b""
    if len(head) < _RECORD_HEADER.size:
        raise ValueError(f"{path}: truncated record header at offset {offset}")
    crc, length, kind = _RECORD_HEADER.unpack(head)
    if kind not in (_FULL, _FIRST, _MIDDLE, _LAST) or length > room - _RECORD_HEADER.size:
        raise ValueError(f"{path}: corrupt record header at offset {offset} (type {kind}, length {length})")
    payload = f.read(length)
    if len(payload) < length:
        raise ValueError(f"{path}: truncated record at offset {offset}")
    if zlib.crc32(payload, zlib.crc32(bytes([kind]))) != crc:
        raise ValueError(f"{path}: crc mismatch in record at offset {offset}")
    return length, kind, payload


def _check_header(path: Path, head: bytes) -> None:
    magic, ident, version = _FILE_HEADER.unpack(head.ljust(_FILE_HEADER.size, b"\0"))
    if magic != _MAGIC or ident != _IDENT:
        raise ValueError(f"{path} is not a W&B run file (header {head!r})")
    if version != _VERSION:
        raise ValueError(f"{path}: unsupported W&B run file version {version}")


def _item_path(item: Any) -> tuple[str, ...]:
    # wandb-core writes `nested_key` (one element per nesting level); older writers used `key`.
    return (item.key,) if item.key else tuple(item.nested_key)


def _item_value(item: Any) -> Any:
    if item.value_json:
        return json.loads(item.value_json)  # also accepts the NaN/Infinity that wandb writes
    # History items may carry a typed value instead of JSON.
    kind = item.WhichOneof("value") if "value" in item.DESCRIPTOR.oneofs_by_name else None
    if kind == "json":
        return json.loads(item.json)
    return None if kind in (None, "none") else getattr(item, kind)


def _merge(target: dict[str, Any], updates: Any) -> None:
    """Apply a ConfigRecord or SummaryRecord (``update`` then ``remove``) to ``target``."""
    for item in updates.update:
        _set_path(target, _item_path(item), _item_value(item))
    for item in updates.remove:
        *parents, last = _item_path(item) or ("",)
        node: Any = target
        for key in parents:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(last, None)


def _set_path(target: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    if not path:
        return
    for key in path[:-1]:
        if not isinstance(target.get(key), dict):
            target[key] = {}
        target = target[key]
    target[path[-1]] = value


def _unwrap(value: Any) -> Any:
    # config.yaml-style values are {"value": v} or {"value": v, "desc": d}; keep the plain value.
    if isinstance(value, dict) and "value" in value and set(value) <= {"value", "desc"}:
        return value["value"]
    return value
