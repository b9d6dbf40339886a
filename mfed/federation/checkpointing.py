"""Checkpoints of the server state, written after every round so no finished round is lost."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from mfed.federation.driver import Driver, Row


def save_atomic(obj: Any, path: Path) -> None:
    """``torch.save`` to a temporary file, then rename: a crash never leaves half a file."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint written by :class:`Checkpointer` (a file, or the run directory holding it)."""
    path = Path(path)
    if path.is_dir():
        path = path / "checkpoint.pt"
    if not path.is_file():
        raise FileNotFoundError(f"resume: no checkpoint at {path}; give a run's output directory or its checkpoint.pt")
    return torch.load(path, map_location="cpu", weights_only=True)


class Checkpointer:
    """Saves ``{"round", "state", "history", "fingerprint"}`` to ``<out_dir>/checkpoint.pt`` each round.

    The state is the server's (global encoder and per-task decoders for M-Fed); strategies that
    keep nothing on the server (Local) save an empty state.
    """

    def __init__(self, out_dir: str | Path) -> None:
        self.path = Path(out_dir) / "checkpoint.pt"

    def on_start(self, driver: Driver) -> None:
        """Create the output directory."""
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def on_round_end(self, driver: Driver, row: Row) -> None:
        """Overwrite the checkpoint with this round's state."""
        checkpoint = {
            "round": int(row["round"]),
            "state": driver.state,
            "history": driver.history,
            "fingerprint": driver.fingerprint(),
        }
        save_atomic(checkpoint, self.path)

    def on_end(self, driver: Driver) -> None:
        """Nothing left to write."""
