"""Shared fixtures: a tiny run config that trains in about a second per round."""

from __future__ import annotations

import gzip
import struct
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest
from omegaconf import DictConfig

from mfed.config import load_config

TINY = (
    "data=shapes",
    "data.pool.size=32",
    "data.pool.length=48",
    "data.test.length=6",
    "data.min_per_client=4",
    "data.val_fraction=0.25",
    "model.encoder.widths=[8,16]",
    "model.decoder.hidden=8",
    "federation.rounds=2",
    "federation.batch_size=8",
    "backend=serial",
    "logger=none",
)


@pytest.fixture
def tiny_cfg(tmp_path: Path) -> Callable[..., DictConfig]:
    """Compose the default config shrunk to a tiny, fast run writing into ``tmp_path``."""

    def make(*overrides: str, base: Sequence[str] = TINY) -> DictConfig:
        return load_config([*base, f"out_dir={tmp_path / 'run'}", *overrides])

    return make


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write ``array`` (uint8) as a gzipped IDX file, the format Fashion-MNIST ships in."""
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture(scope="session")
def fashion_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Fashion-MNIST in the real file format: 20 train and 10 test 28x28 items."""
    from mfed.data.fashion import FILES

    root = tmp_path_factory.mktemp("fashion")
    rng = np.random.default_rng(0)
    for split, n in (("train", 20), ("test", 10)):
        images = np.zeros((n, 28, 28), np.uint8)
        images[:, 6:22, 8:20] = rng.integers(60, 255, (n, 16, 12))  # a 16x12 item, background 0
        images_file, labels_file = FILES[split]
        write_idx(root / images_file, images)
        write_idx(root / labels_file, np.arange(n) % 10)
    return root
