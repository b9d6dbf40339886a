"""NYUD-v2 in its multi-task packaging: semseg (40 classes), depth, normals, edges.

Format source: the NYUD-MT packaging of Maninis et al. (ASTMT) as read by MTI-Net /
Multi-Task-Learning-PyTorch (Vandenhende et al.) and FedHCA2; summarised in PROTOCOL.md
section 3. 795 train / 654 test images (the test list is ``gt_sets/val.txt``). Image sizes differ
between copies (480x640, 448x576), so shapes are checked per sample instead of hard-coded.

Encodings: ``segmentation/<id>.png`` holds 0 = void and 1-40 = classes; we shift by -1 so the
classes are 0-39 and void is 255. ``depth/<id>.npy`` is metres with 0 = invalid (NaN/inf are
also read as 0). ``normals/<id>.npy`` is ``(H, W, 3)`` in [-1, 1] with zero norm = invalid
(a ``.png`` is decoded ``2v/255 - 1``). ``edge/<id>.npy`` or ``.png`` is binary (> 0.5 = edge).
See docs/data.md.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mfed.data.folder_dataset import FolderDataset
from mfed.data.image_io import (
    check_shapes,
    decode_normals_rgb,
    read_npy,
    read_png,
    read_rgb,
)

TASKS: tuple[str, ...] = ("semseg", "depth", "normals", "edges")
NUM_CLASSES = 40
IGNORE = 255

DEFAULT_FOLDERS: dict[str, str] = {
    "images": "images",
    "splits": "gt_sets",
    "semseg": "segmentation",
    "depth": "depth",
    "normals": "normals",
    "edges": "edge",
}

# file kind -> extensions tried in order (folder key = kind)
_EXTENSIONS: dict[str, tuple[str, ...]] = {
    "images": ("jpg", "png"),
    "semseg": ("png",),
    "depth": ("npy",),
    "normals": ("npy", "png"),
    "edges": ("npy", "png"),
}


def shift_nyud_labels(raw: np.ndarray, source: str = "segmentation") -> np.ndarray:
    """Map NYUD labels 0 = void, 1-40 = classes to int64 0-39 with void = 255.

    Raises:
        ValueError: on values above 40, e.g. a copy that is already shifted (255 = void), which
            the shift would silently corrupt.

    """
    raw = np.asarray(raw)
    if raw.ndim != 2:
        raise ValueError(f"{source}: a label map must be (H, W), got shape {raw.shape}")
    if raw.size and (raw.max() > NUM_CLASSES or raw.min() < 0):
        raise ValueError(
            f"{source}: labels must be 0 (void) to {NUM_CLASSES}, found values in "
            f"[{raw.min()}, {raw.max()}]; is this copy already shifted?"
        )
    labels = raw.astype(np.int64) - 1
    labels[raw == 0] = IGNORE
    return labels


def _squeeze_map(arr: np.ndarray, source: str) -> np.ndarray:
    # Copies store single-channel maps as (H, W), (H, W, 1) or (1, H, W).
    if arr.ndim == 3 and 1 in (arr.shape[0], arr.shape[-1]):
        arr = arr[0] if arr.shape[0] == 1 else arr[..., 0]
    if arr.ndim != 2:
        raise ValueError(f"{source}: expected a (H, W) map, got shape {arr.shape}")
    return arr


def read_normals(path: Path) -> np.ndarray:
    """Read ``(H, W, 3)`` float32 normals from ``.npy`` (HWC or CHW) or an 8-bit ``.png``."""
    if path.suffix == ".png":
        return decode_normals_rgb(read_rgb(path))
    arr = read_npy(path).astype(np.float32)
    if arr.ndim == 3 and arr.shape[-1] != 3 and arr.shape[0] == 3:
        arr = np.moveaxis(arr, 0, -1)
    if arr.ndim != 3 or arr.shape[-1] != 3:
        raise ValueError(f"{path}: normals must be (H, W, 3), got shape {arr.shape}")
    return np.nan_to_num(arr, nan=0.0, posinf=0.0, neginf=0.0)


def read_depth(path: Path) -> np.ndarray:
    """Read ``(H, W)`` float32 depth in metres; non-finite values become 0 (invalid)."""
    depth = _squeeze_map(read_npy(path), str(path)).astype(np.float32)
    return np.nan_to_num(depth, nan=0.0, posinf=0.0, neginf=0.0)


def read_edges(path: Path) -> np.ndarray:
    """Read a binary edge map (``.npy`` or ``.png``, 0/1 or 0/255) as float32 {0, 1}."""
    arr = read_png(path) if path.suffix == ".png" else read_npy(path)
    return (_squeeze_map(arr, str(path)) > 0.5).astype(np.float32)


class NYUDv2(FolderDataset):
    """NYUD-v2 multi-task dataset read from a local copy; never downloads.

    Args:
        root: folder holding ``images/``, ``gt_sets/`` and the task folders.
        split: ``"train"`` (795 images) or ``"val"`` (the 654 test images).
        tasks: subset of :attr:`TASKS` to return next to ``"image"``.
        size: optional ``(H, W)`` every sample is resized to, so that batches stack.
        folders: overrides of :data:`DEFAULT_FOLDERS` (paths relative to ``root``).
        length: use the split's first ``length`` images only (``None``: all).

    """

    NAME = "NYUD-v2"
    TASKS: tuple[str, ...] = TASKS
    DEFAULT_FOLDERS = DEFAULT_FOLDERS
    ROOT_KEY = "data.pool.root (or $MFED_NYUD_ROOT)"

    def kinds(self) -> list[str]:
        """The image and one file per task."""
        return ["images", *self.tasks]

    def locations(self, kind: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """One folder per kind, with the extensions that copies use."""
        return (kind,), _EXTENSIONS[kind]

    def load(self, index: int) -> dict[str, np.ndarray]:
        """Decode one sample (NYUD label shift, depth, normals, edges)."""
        sample_id, paths = self._ids[index], self._paths[index]
        arrays = {"image": read_rgb(paths["images"])}
        for task in self.tasks:
            path = paths[task]
            if task == "semseg":
                arrays[task] = shift_nyud_labels(read_png(path), source=str(path))
            elif task == "depth":
                arrays[task] = read_depth(path)
            elif task == "normals":
                arrays[task] = read_normals(path)
            else:
                arrays[task] = read_edges(path)
        check_shapes(sample_id, arrays)
        return arrays
