"""Shared fixtures: a tiny run config that trains in about a second per round."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from omegaconf import DictConfig

from mfed.config import load_config

TINY = (
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
