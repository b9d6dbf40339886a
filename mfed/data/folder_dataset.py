"""The shared shape of the on-disk benchmarks: an id list, one folder per kind, files by id.

Subclasses say which kinds of file a sample needs (:meth:`FolderDataset.kinds`), where each
kind may live (:meth:`FolderDataset.locations`) and how to decode a sample
(:meth:`FolderDataset.load`). Every file of the split is located when the dataset is built, so
a missing one fails at once, listing everything that is missing.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from mfed.data.image_io import (
    check_root,
    check_size,
    check_split,
    check_tasks,
    find_file,
    merge_folders,
    missing_files_error,
    read_id_list,
    resize_sample,
    to_tensors,
)  # fmt: skip


class FolderDataset(Dataset[dict[str, torch.Tensor]], ABC):
    """A split of a multi-task benchmark stored as ``<root>/<folder of kind>/<id>.<ext>``.

    Args:
        root: The dataset folder.
        split: ``train`` or ``val``.
        tasks: Subset of :attr:`TASKS` to return next to ``image``.
        size: Optional ``(H, W)`` every sample is resized to, so batches stack.
        folders: Overrides of :attr:`DEFAULT_FOLDERS` (paths relative to ``root``).

    """

    NAME: str = ""
    TASKS: tuple[str, ...] = ()
    DEFAULT_FOLDERS: Mapping[str, str] = {}

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        tasks: Iterable[str] | None = None,
        size: tuple[int, int] | None = None,
        folders: Mapping[str, str] | None = None,
    ) -> None:
        self.root = check_root(self.NAME, root)
        self.split = check_split(split)
        self.tasks = check_tasks(self.TASKS if tasks is None else tasks, self.TASKS)
        self.size = check_size(size)
        self.folders = merge_folders(dict(self.DEFAULT_FOLDERS), folders)
        self._ids = read_id_list(self.root / self.folders["splits"] / f"{split}.txt")
        self.prepare()
        self._paths = self.locate_all()

    def prepare(self) -> None:
        """Hook run before files are located: set what :meth:`kinds` needs (nothing by default)."""

    @property
    def ids(self) -> tuple[str, ...]:
        """Image ids of this split, in file order."""
        return tuple(self._ids)

    def __len__(self) -> int:
        return len(self._ids)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        sample = to_tensors(self.load(index))
        return resize_sample(sample, self.size) if self.size else sample

    def __repr__(self) -> str:
        return f"{type(self).__name__}(split={self.split!r}, n={len(self)}, tasks={self.tasks})"

    @abstractmethod
    def kinds(self) -> list[str]:
        """The kinds of file every sample needs (e.g. the image and one per task)."""

    @abstractmethod
    def locations(self, kind: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """``(folder keys, extensions)`` where a file of ``kind`` may be, tried in order."""

    @abstractmethod
    def load(self, index: int) -> dict[str, np.ndarray]:
        """Decode sample ``index`` into arrays by key (``image`` and each task)."""

    def locate_all(self) -> list[dict[str, Path]]:
        """Every sample's file path by kind; raises listing all missing files."""
        found: list[dict[str, Path]] = []
        missing: list[str] = []
        for sample_id in self._ids:
            paths: dict[str, Path] = {}
            for kind in self.kinds():
                keys, exts = self.locations(kind)
                hits = (find_file(self.root / self.folders[k], sample_id, exts) for k in keys)
                path = next((p for p in hits if p is not None), None)
                if path is None:
                    tried = [f"{self.folders[k]}/{sample_id}.{e}" for k in keys for e in exts]
                    missing.append(f"{kind} for {sample_id!r}: " + " or ".join(tried))
                else:
                    paths[kind] = path
            found.append(paths)
        if missing:
            raise missing_files_error(self.NAME, self.root, missing)
        return found
