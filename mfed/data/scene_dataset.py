"""SceneDataset: a pool of generated multi-task scenes, materialised per client shard."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from mfed.data.items import ItemSource
from mfed.data.scenes import TARGETS, compose_scene, scene_rng

SPLITS = ("train", "test")


class SceneDataset(Dataset[dict[str, torch.Tensor]]):
    """``length`` scenes of ``split``, generated on demand and deterministic per index.

    Samples follow the project's contract: ``{"image": (C, H, W) float32, <task>: target}``.

    Args:
        items: Where the scene's items come from.
        split: ``train`` (train items) or ``test`` (test items).
        length: Number of scenes in the pool.
        size: Side of the square scene in pixels.
        max_items: At most this many items per scene (at least one).
        seed: Scene seed; (seed, split, index) fixes a scene.

    """

    def __init__(
        self,
        items: ItemSource,
        split: str = "train",
        length: int = 2000,
        size: int = 64,
        max_items: int = 3,
        seed: int = 0,
    ) -> None:
        if split not in SPLITS:
            raise ValueError(f"data split must be one of {SPLITS}, got {split!r}")
        if length < 1:
            raise ValueError(f"data length must be >= 1, got {length}")
        if size < 16:
            raise ValueError(f"data size must be >= 16 pixels, got {size}")
        if max_items < 1:
            raise ValueError(f"data max_items must be >= 1, got {max_items}")
        self.items, self.split, self.length = items, split, length
        self.size, self.max_items, self.seed = size, max_items, seed
        self.num_classes = items.num_classes
        self.tasks = TARGETS

    def __len__(self) -> int:
        return self.length

    def scene(self, index: int) -> dict[str, np.ndarray]:
        """Scene ``index`` as numpy arrays."""
        if not 0 <= index < self.length:
            raise IndexError(f"scene index {index} outside [0, {self.length})")
        rng = scene_rng(self.seed, self.split, index)
        return compose_scene(self.items, rng, self.split, self.size, self.max_items)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {k: torch.from_numpy(v) for k, v in self.scene(index).items()}

    def labels(self) -> np.ndarray:
        """One class per scene: the item class covering the most pixels (for label-skew sharding)."""
        dominant = np.empty(self.length, np.int64)
        for i in range(self.length):
            counts = np.bincount(self.scene(i)["semseg"].ravel(), minlength=self.num_classes + 1)[1:]
            dominant[i] = int(np.argmax(counts))
        return dominant

    def materialize(self, indices: Sequence[int], keys: Sequence[str]) -> TensorDictDataset:
        """Generate the scenes of ``indices`` once and keep only ``image`` and ``keys``."""
        unknown = sorted(set(keys) - set(self.tasks))
        if unknown:
            raise ValueError(f"scenes have no target {unknown}; targets are {list(self.tasks)}")
        scenes = [self.scene(int(i)) for i in indices]
        fields = ("image", *keys)
        return TensorDictDataset({k: torch.from_numpy(np.stack([s[k] for s in scenes])) for k in fields})


class TensorDictDataset(Dataset[dict[str, torch.Tensor]]):
    """Stacked tensors of equal first dimension, served as sample dicts."""

    def __init__(self, tensors: dict[str, torch.Tensor]) -> None:
        lengths = {k: len(v) for k, v in tensors.items()}
        if len(set(lengths.values())) != 1:
            raise ValueError(f"all tensors need the same length, got {lengths}")
        self.tensors = tensors

    def __len__(self) -> int:
        return len(next(iter(self.tensors.values())))

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {k: v[index] for k, v in self.tensors.items()}
