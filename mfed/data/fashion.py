"""Fashion-MNIST items for FashionScenes-MT: real images with human class labels.

Fashion-MNIST (Xiao et al., 2017; MIT licence): 60k train + 10k test grey 28x28 images of 10
clothing classes, read from the gzipped IDX files that Debian's package
``dataset-fashion-mnist`` installs under ``/usr/share/datasets/fashion-mnist/``. An item's
silhouette is its pixels > 20 (the class is the human label, the mask is derived by threshold).
Train scenes draw train items, test scenes test items.
"""

from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path
from typing import Any

import numpy as np

from mfed.data.items import Item

DEFAULT_ROOT = "/usr/share/datasets/fashion-mnist"
ENV_VAR = "MFED_FASHION_MNIST"
CLASS_NAMES = (
    "t-shirt", "trouser", "pullover", "dress", "coat",
    "sandal", "shirt", "sneaker", "bag", "ankle-boot",
)  # fmt: skip
FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
SILHOUETTE_THRESHOLD = 20
_IDX_TYPES: dict[int, np.dtype[Any]] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
}


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (optionally gzipped): magic ``00 00 <type> <ndim>``, big-endian dims, data."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_TYPES:
        raise ValueError(f"{path} is not an IDX file (bad magic {raw[:4]!r})")
    ndim = raw[3]
    dims = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
    data = np.frombuffer(raw, dtype=_IDX_TYPES[raw[2]], offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise ValueError(f"{path}: header says {dims} but holds {data.size} values")
    return data.reshape(dims)


def resolve_root(root: str | Path | None) -> Path:
    """``root``, else ``$MFED_FASHION_MNIST``, else Debian's location; check the files are there."""
    path = Path(root or os.environ.get(ENV_VAR) or DEFAULT_ROOT)
    missing = [name for pair in FILES.values() for name in pair if not (path / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"Fashion-MNIST files {missing} not found in {path}. Install them with "
            "`apt-get install dataset-fashion-mnist` (`make setup-data` does it), or point "
            f"data.pool.items.root (or ${ENV_VAR}) at a folder holding the four IDX .gz files."
        )
    return path


class FashionMNISTItems:
    """Items cut from Fashion-MNIST images, loaded lazily once per process.

    Args:
        root: Folder with the IDX files; ``None`` uses ``$MFED_FASHION_MNIST`` or Debian's path.
        crop: Crop each item to its silhouette's bounding box (tighter placement).

    """

    num_classes = len(CLASS_NAMES)
    class_names = CLASS_NAMES

    def __init__(self, root: str | Path | None = None, crop: bool = True) -> None:
        self.root = resolve_root(root)
        self.crop = crop
        self._arrays: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def __getstate__(self) -> dict[str, Any]:
        # Ship the path, not 47 MB of pixels: every process reads the files itself.
        return {**self.__dict__, "_arrays": {}}

    def arrays(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """``(images (N, 28, 28) uint8, labels (N,) uint8)`` of ``split``."""
        if split not in FILES:
            raise ValueError(f"split must be one of {tuple(FILES)}, got {split!r}")
        if split not in self._arrays:
            images, labels = (read_idx(self.root / name) for name in FILES[split])
            if len(images) != len(labels):
                raise ValueError(f"{self.root}: {len(images)} {split} images but {len(labels)} labels")
            self._arrays[split] = (images, labels)
        return self._arrays[split]

    def sample(self, rng: np.random.Generator, split: str) -> Item:
        """A random item of ``split``: silhouette = pixels > 20, texture = pixels / 255."""
        images, labels = self.arrays(split)
        i = int(rng.integers(len(images)))
        image = images[i]
        mask = image > SILHOUETTE_THRESHOLD
        if self.crop and mask.any():
            rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
            window = np.s_[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
            image, mask = image[window], mask[window]
        return Item(mask=mask, texture=image.astype(np.float32) / 255.0, label=int(labels[i]))
