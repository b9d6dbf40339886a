"""Checkpoints of the server state, written after every round so no finished round is lost.

The checkpoint is replaced atomically (:mod:`mfed.atomic`): a run killed while writing leaves
the previous complete file, so the last complete round survives until the next one is whole.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from mfed.atomic import replace_atomically, why_not_written

if TYPE_CHECKING:
    from mfed.federation.driver import Driver, Row

CHECKPOINT_KEYS = ("round", "state", "history", "fingerprint")


def save_atomic(obj: Any, path: Path) -> None:
    """``torch.save`` atomically (see :func:`mfed.atomic.replace_atomically`)."""
    replace_atomically(path, lambda f: torch.save(obj, f))


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint written by :class:`Checkpointer` (a file, or the run directory holding it).

    Raises:
        FileNotFoundError: There is no checkpoint at ``path``.
        ValueError: The file is truncated, corrupt or not an mfed checkpoint.

    """
    path = Path(path)
    if path.is_dir():
        path = path / "checkpoint.pt"
    if not path.is_file():
        raise FileNotFoundError(f"resume: no checkpoint at {path}; give a run's output directory or its checkpoint.pt")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises RuntimeError, EOFError, UnpicklingError, ... by damage
        if "Weights only load failed" in str(err):  # torch's message advises unpickling it anyway: never
            raise ValueError(
                f"resume: {path} is not an mfed checkpoint: it holds Python objects that mfed never writes, and "
                "loading them could run code; give a run's checkpoint.pt"
            ) from None
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(
            f"resume: {path} is not a readable checkpoint (truncated or corrupt: {first}); resume from a run whose "
            "checkpoint.pt is whole, or start the run again"
        ) from None
    missing = [k for k in CHECKPOINT_KEYS if not isinstance(checkpoint, dict) or k not in checkpoint]
    if missing:
        raise ValueError(f"resume: {path} is not an mfed checkpoint (it lacks {missing}); give a run's checkpoint.pt")
    return checkpoint


class CheckpointError(OSError):
    """A round's checkpoint could not be written whole; the message says why (a full disk, a read-only folder)."""

    def __init__(self, path: Path, round_idx: int, kept: int | None, cause: BaseException | str) -> None:
        why = why_not_written(path.parent, cause)
        held = f"the checkpoint there holds round {kept}" if kept else "no round is checkpointed"
        super().__init__(f"the checkpoint of round {round_idx} could not be written to {path}: {why}; {held}")


class Checkpointer:
    """Saves the run to ``<out_dir>/checkpoint.pt`` after each round.

    It holds ``round``, ``state`` (the server's: global encoder and per-task decoders for M-Fed;
    empty for Local, whose models live on the clients), ``history``, ``faults``, ``meta`` (e.g. the
    W&B run id, so a resumed run continues the same W&B run) and the ``fingerprint`` a resume must match.
    """

    def __init__(self, out_dir: str | Path) -> None:
        self.path = Path(out_dir) / "checkpoint.pt"

    def on_start(self, driver: Driver) -> None:
        """Create the output directory."""
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def on_round_end(self, driver: Driver, row: Row) -> None:
        """Replace the checkpoint with this round's state.

        The state is finite: the driver never keeps an aggregate with non-finite values.
        """
        done = int(row["round"])
        checkpoint = {
            "round": done,
            "state": driver.state,
            "history": driver.history,
            "faults": [vars(f) for f in driver.faults],
            "meta": driver.meta,
            "fingerprint": driver.fingerprint(),
        }
        try:
            save_atomic(checkpoint, self.path)
            written = int(load_checkpoint(self.path)["round"])  # read back: reported only once it is whole
        except (OSError, RuntimeError, ValueError) as err:  # torch's writer raises RuntimeError on a full disk
            raise CheckpointError(self.path, done, driver.info.get("checkpointed"), err.__cause__ or err) from err
        if written != done:
            raise CheckpointError(self.path, done, driver.info.get("checkpointed"), f"it reads back round {written}")
        driver.info["checkpointed"] = done

    def on_end(self, driver: Driver) -> None:
        """Nothing left to write."""
