"""A quiet Lightning Trainer for short local fits (no banners, logs or checkpoints)."""

from __future__ import annotations

import functools
import logging
import warnings

import lightning.pytorch as pl

_NOISY_LOGGERS = (
    "lightning.pytorch.utilities.rank_zero",
    "lightning.pytorch.accelerators.cuda",
    "lightning.fabric.utilities.seed",
)


def silence_lightning() -> None:
    """Mute Lightning's per-fit info lines and its small-data warnings, once per process."""
    for name in _NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=r".*number of training batches.*")
    warnings.filterwarnings("ignore", message=r".*GPU available but not used.*")
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)` is deprecated.*")
    warnings.filterwarnings("ignore", message=r".*defined a `validation_step` but have no `val_dataloader`.*")
    # A part a strategy freezes (e.g. M-Fed's frozen-encoder ablation) is kept in eval mode on purpose.
    warnings.filterwarnings("ignore", message=r".*module\(s\) in eval mode at the start of training.*")


def quiet_trainer(max_epochs: int = 1, accelerator: str = "cpu", max_steps: int = -1) -> pl.Trainer:
    """A one-device Trainer that writes nothing and prints nothing; ``max_steps`` >= 0 stops it there first.

    ``accelerator="auto"`` takes a GPU when one is visible to the process (Ray sets
    ``CUDA_VISIBLE_DEVICES`` for an actor that requested GPUs), else the CPU.
    """
    silence_lightning()
    return pl.Trainer(
        accelerator=accelerator,
        devices=1,
        max_epochs=max_epochs,
        max_steps=max_steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )


@functools.lru_cache(maxsize=2)
def evaluation_trainer(accelerator: str = "cpu") -> pl.Trainer:
    """One quiet Trainer per process (and accelerator) for every ``validate`` call.

    Building a Trainer costs about 13 ms (Lightning scans the installed packages' entry points
    for callbacks), which dominates scoring a small client; a Trainer validates any module it
    is given, holding nothing from one call to the next but a reference to the last module.
    """
    return quiet_trainer(accelerator=accelerator)
