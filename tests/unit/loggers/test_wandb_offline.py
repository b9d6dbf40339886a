"""Tests for the W&B offline run-file reader, against runs written by the real wandb client."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path

import pytest

from mfed.loggers.wandb_offline import find_offline_runs, iter_records, read_run_file

pytest.importorskip("wandb")

CONFIG = {"lr": 0.1, "tasks": ["a", "b"]}
ROWS = [{"round": r, "val/semseg/mIoU": 0.1 * r, "train/depth/loss": 1.0 / (r + 1)} for r in range(5)]
BIG_STRING = "x" * 70_000  # the run record alone spans three 32 KiB blocks
BIG_ROWS = [{"i": i, "s": f"{i:04d}" + "y" * 200} for i in range(400)]
BLOCK = 32 * 1024


def _write_offline_run(wandb_dir: Path, body: str) -> Path:
    """Run ``body`` after ``import wandb`` in a fresh offline process; return its run file."""
    script = wandb_dir / "make_run.py"  # a file: the big run's source exceeds the argv limit
    script.write_text(f"import wandb\n{textwrap.dedent(body)}\nrun.finish()\nwandb.teardown()\n")
    env = {
        **os.environ,
        "WANDB_MODE": "offline",
        "WANDB_DIR": str(wandb_dir),
        "WANDB_SILENT": "true",
        "WANDB_CONSOLE": "off",
    }
    subprocess.run([sys.executable, str(script)], env=env, check=True, timeout=120)
    (path,) = find_offline_runs(wandb_dir)
    return path


@pytest.fixture(scope="module")
def small_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _write_offline_run(
        tmp_path_factory.mktemp("small"),
        f"""
        run = wandb.init(project="mfed-test", group="mix-ab", name="fedavg-1", config={CONFIG!r})
        run.define_metric("round")
        run.define_metric("*", step_metric="round")
        for row in {ROWS!r}:
            run.log(row)
        run.summary["best/val/semseg/mIoU"] = 0.4
        """,
    )


@pytest.fixture(scope="module")
def big_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _write_offline_run(
        tmp_path_factory.mktemp("big"),
        f"""
        run = wandb.init(project="mfed-test", config={{"big": {BIG_STRING!r}}})
        for row in {BIG_ROWS!r}:
            run.log(row)
        """,
    )


def _user_keys(row: dict) -> dict:
    return {k: v for k, v in row.items() if not k.startswith("_")}


def test_find_offline_runs_lists_run_files(small_run: Path) -> None:
    root = small_run.parents[2]

    found = find_offline_runs(root)

    assert found == [small_run]
    assert small_run.name == f"run-{read_run_file(small_run).run_id}.wandb"
    assert find_offline_runs(root / "wandb" / "missing") == []


def test_history_has_exactly_the_logged_rows(small_run: Path) -> None:
    run = read_run_file(small_run)

    assert [_user_keys(row) for row in run.history] == ROWS
    assert [row["_step"] for row in run.history] == list(range(len(ROWS)))


def test_summary_config_and_run_metadata(small_run: Path) -> None:
    run = read_run_file(small_run)

    assert run.summary["best/val/semseg/mIoU"] == 0.4
    assert {k: run.summary[k] for k in ROWS[-1]} == ROWS[-1]  # the summary keeps the last values
    assert {k: run.config[k] for k in CONFIG} == CONFIG
    assert (run.project, run.group, run.name) == ("mfed-test", "mix-ab", "fedavg-1")
    assert len(run.run_id) == 8


def test_records_spanning_blocks_come_back_whole(big_run: Path) -> None:
    run = read_run_file(big_run)

    assert big_run.stat().st_size > 4 * BLOCK
    assert run.config["big"] == BIG_STRING
    assert [_user_keys(row) for row in run.history] == BIG_ROWS
    assert (run.group, run.name) == ("", "")


def test_bad_magic_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "run-fake.wandb"
    path.write_bytes(b"PK\x03\x04 not a wandb file at all")

    with pytest.raises(ValueError, match=r"run-fake\.wandb is not a W&B run file"):
        read_run_file(path)


def test_corrupt_payload_names_file_and_offset(small_run: Path, tmp_path: Path) -> None:
    data = bytearray(small_run.read_bytes())
    data[7 + 7 + 5] ^= 0xFF  # a byte inside the first record's payload (its header is at 7)
    path = tmp_path / "run-bad.wandb"
    path.write_bytes(bytes(data))

    with pytest.raises(ValueError, match=r"run-bad\.wandb: crc mismatch .* offset 7$"):
        read_run_file(path)


def test_truncated_file_is_an_error(small_run: Path, tmp_path: Path) -> None:
    path = tmp_path / "run-cut.wandb"
    shutil.copy(small_run, path)
    os.truncate(path, path.stat().st_size - 3)

    with pytest.raises(ValueError, match="truncated"):
        read_run_file(path)


def _leveldb_log(payloads: list[bytes]) -> bytes:
    """A naive LevelDB-log writer: the reference the reader must invert."""
    out = bytearray(struct.pack("<4sHB", b":W&B", 0xBEE1, 0))
    for payload in payloads:
        rest, first = payload, True
        while True:
            room = BLOCK - len(out) % BLOCK
            if room < 7:
                out += b"\0" * room
                continue
            chunk, rest = rest[: room - 7], rest[room - 7 :]
            kind = (1 if not rest else 2) if first else (4 if not rest else 3)
            crc = zlib.crc32(chunk, zlib.crc32(bytes([kind])))
            out += struct.pack("<IHB", crc, len(chunk), kind) + chunk
            first = False
            if not rest:
                break
    return bytes(out)


def _history_record(text: str) -> bytes:
    from wandb.proto import wandb_internal_pb2 as pb

    item = pb.HistoryItem(nested_key=["s"], value_json=json.dumps(text))
    return pb.Record(history=pb.HistoryRecord(item=[item])).SerializeToString()


def test_block_padding_and_fragments_of_a_handwritten_log(tmp_path: Path) -> None:
    # Size the first record so its block ends with 3 bytes of padding, then one that spans 3 blocks.
    target = BLOCK - 7 - 7 - 3
    n = target - len(_history_record(""))
    while len(_history_record("a" * n)) > target:
        n -= 1
    texts = ["a" * n, "b" * (2 * BLOCK + 100), "c"]
    data = _leveldb_log([_history_record(t) for t in texts])
    path = tmp_path / "run-hand.wandb"
    path.write_bytes(data)

    rows = read_run_file(path).history

    assert len(_history_record(texts[0])) == target
    assert data[BLOCK - 3 : BLOCK] == b"\0\0\0"
    assert rows == [{"s": t} for t in texts]
    assert sum(1 for _ in iter_records(path)) == 3


def test_module_imports_without_wandb() -> None:
    code = "import sys; sys.modules['wandb'] = None; import mfed.loggers.wandb_offline"

    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
