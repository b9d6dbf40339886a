"""The shared shape of the on-disk benchmarks: an id list, one folder per kind, files by id.

Subclasses say which kinds of file a sample needs (:meth:`FolderDataset.kinds`), where each
kind may live (:meth:`FolderDataset.locations`) and how to decode a sample
(:meth:`FolderDataset.load`). Every file of the split is located (one ``stat`` each, nothing
decoded) when the dataset is built, i.e. in the driver before any client starts, so a missing or
empty file fails at once, in one error that counts them all and names the first few.
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
    incomplete_copy_error,
    locate_file,
    merge_folders,
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
        length: Use the split's first ``length`` ids only (``None``: all); more than it holds is refused.

    """

    NAME: str = ""
    TASKS: tuple[str, ...] = ()
    DEFAULT_FOLDERS: Mapping[str, str] = {}
    ROOT_KEY: str = "data.pool.root"  # what points at the root, for error messages

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        tasks: Iterable[str] | None = None,
        size: tuple[int, int] | None = None,
        folders: Mapping[str, str] | None = None,
        length: int | None = None,
    ) -> None:
        self.root = check_root(self.NAME, root, self.ROOT_KEY)
        self.split = check_split(split)
        self.tasks = check_tasks(self.TASKS if tasks is None else tasks, self.TASKS)
        self.size = check_size(size)
        self.folders = merge_folders(dict(self.DEFAULT_FOLDERS), folders)
        self._ids = read_id_list(self.root / self.folders["splits"] / f"{split}.txt")
        if length is not None:
            if not 1 <= length <= len(self._ids):
                raise ValueError(
                    f"{self.NAME} {split} holds {len(self._ids)} images; length={length} asks for more (or < 1): "
                    f"give at most {len(self._ids)} (data.pool.length / data.test.length) or null for all"
                )
            self._ids = self._ids[:length]
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
        """Every sample's file path by kind.

        Raises:
            FileNotFoundError: when any file is missing or empty (size 0), counting them all,
                naming the first few and the config keys that point at their folders.

        """
        kinds = self.kinds()
        found: list[dict[str, Path]] = []
        problems: list[str] = []
        bad_keys: dict[str, None] = {}  # folder keys of the bad files, in order, without repeats
        for sample_id in self._ids:
            paths: dict[str, Path] = {}
            for kind in kinds:
                hit = self._locate(sample_id, kind)
                if isinstance(hit, Path):
                    paths[kind] = hit
                else:
                    problems.append(f"{kind} for {sample_id!r}: {hit}")
                    bad_keys.update(dict.fromkeys(self.locations(kind)[0]))
            found.append(paths)
        if problems:
            fix = self._fix(list(bad_keys))
            raise incomplete_copy_error(self.NAME, self.root, problems, len(self._ids) * len(kinds), fix)
        return found

    def _locate(self, sample_id: str, kind: str) -> Path | str:
        """The non-empty file of ``kind`` for ``sample_id``, else what is wrong with it."""
        keys, exts = self.locations(kind)
        hits = (locate_file(self.root / self.folders[k], sample_id, exts) for k in keys)
        hit = next((h for h in hits if h is not None), None)
        if hit is None:
            return " or ".join(f"{self.folders[k]}/{sample_id}.{e}" for k in keys for e in exts) + " not found"
        path, size = hit
        return path if size > 0 else f"{path.relative_to(self.root)} is empty (0 bytes)"

    def _fix(self, keys: list[str]) -> str:
        absent = [self.folders[k] for k in keys if not (self.root / self.folders[k]).is_dir()]
        note = f" (no folder {', '.join(absent)} under the root)" if absent else ""
        folder_keys = ", ".join(f"data.pool.folders.{k}" for k in keys)
        return (
            f"Fix: point {self.ROOT_KEY} at a complete copy, or set {folder_keys}{note} to the "
            "folder(s) holding these files (paths relative to the root)"
        )
