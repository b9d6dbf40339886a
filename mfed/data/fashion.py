"""Fashion-MNIST items for FashionScenes-MT: real images with human class labels.

Fashion-MNIST (Xiao et al., 2017; MIT licence): 60k train + 10k test grey 28x28 images of 10
clothing classes, read from the gzipped IDX files that Debian's package
``dataset-fashion-mnist`` installs under ``/usr/share/datasets/fashion-mnist/``. An item's
silhouette is its pixels > 20 (the class is the human label, the mask is derived by threshold).
Train scenes draw train items, test scenes test items.

The four files are read through and checked when :class:`FashionMNISTItems` is built (in the
driver, before any client starts): a truncated or corrupt copy fails there, naming the file.
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from functools import lru_cache
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
FIX_HINT = (
    "reinstall the files (`apt-get install --reinstall dataset-fashion-mnist`; `make setup-data` "
    f"installs it), or point data.pool.items.root (or ${ENV_VAR}) at a folder holding intact "
    "copies of the four IDX .gz files"
)
_IDX_TYPES: dict[int, np.dtype[Any]] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
}


def _read_bytes(path: Path) -> bytes:
    """The whole (decompressed) content; gzip checks CRC and length at the end of the stream."""
    if path.suffix != ".gz":
        return path.read_bytes()
    try:
        with gzip.open(path, "rb") as f:
            return f.read()
    except EOFError:
        raise ValueError(f"{path} is truncated: gzip stream ended early") from None
    except (gzip.BadGzipFile, zlib.error) as err:
        raise ValueError(f"{path} is corrupt: {err}") from None


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (optionally gzipped): magic ``00 00 <type> <ndim>``, big-endian dims, data.

    The returned array is read-only (a view of the file's bytes).

    Raises:
        ValueError: naming the file, when it is truncated, corrupt, not IDX, or when its header's
            shape disagrees with the number of values it holds.

    """
    path = Path(path)
    raw = _read_bytes(path)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_TYPES:
        raise ValueError(f"{path} is not an IDX file (bad magic {raw[:4]!r})")
    ndim, dtype = raw[3], _IDX_TYPES[raw[2]]
    offset = 4 + 4 * ndim
    if len(raw) < offset:
        raise ValueError(f"{path} is truncated: {len(raw)} bytes, shorter than its {ndim}-d IDX header")
    dims = struct.unpack(f">{ndim}I", raw[4:offset])
    held, stray = divmod(len(raw) - offset, dtype.itemsize)
    if held != int(np.prod(dims)) or stray:
        extra = f" (+ {stray} stray bytes)" if stray else ""
        raise ValueError(f"{path}: header says {dims} but holds {held} values{extra}")
    return np.frombuffer(raw, dtype=dtype, offset=offset).reshape(dims)


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


@lru_cache(maxsize=4)
def _read_cached(path: str, size: int, mtime_ns: int) -> np.ndarray:
    # Keyed by size and mtime: the pool and the test set (two instances) read each file once
    # per process, and a file replaced on disk is read again.
    return read_idx(path)


def _read_checked(path: Path) -> np.ndarray:
    """:func:`read_idx` (cached per process), its errors completed with the fix."""
    stat = path.stat()
    try:
        return _read_cached(str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    except ValueError as err:
        raise ValueError(f"Fashion-MNIST: {err}; {FIX_HINT}") from None


def load_split(root: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Read and check ``(images (N, 28, 28) uint8, labels (N,) uint8)`` of ``split`` under ``root``.

    Raises:
        ValueError: naming the file and the fix, when a file is unreadable, has the wrong
            shape or type, or the image and label counts differ.

    """
    images_file, labels_file = FILES[split]
    images, labels = _read_checked(root / images_file), _read_checked(root / labels_file)
    for name, arr, ndim in ((images_file, images, 3), (labels_file, labels, 1)):
        if arr.ndim != ndim or arr.dtype != np.uint8:
            raise ValueError(
                f"Fashion-MNIST: {root / name} holds a {arr.dtype} array of shape {arr.shape}, "
                f"expected {ndim}-d uint8; {FIX_HINT}"
            )
    if len(images) != len(labels):
        raise ValueError(
            f"Fashion-MNIST: {root / images_file} holds {len(images)} images but {root / labels_file} "
            f"{len(labels)} labels; {FIX_HINT}"
        )
    if labels.size and labels.max() >= len(CLASS_NAMES):
        raise ValueError(
            f"Fashion-MNIST: {root / labels_file} holds label {labels.max()}, expected 0-{len(CLASS_NAMES) - 1}; "
            f"{FIX_HINT}"
        )
    return images, labels


class FashionMNISTItems:
    """Items cut from Fashion-MNIST images.

    Building one reads and checks all four files (about 0.4 s for the real 30 MB of gz on a
    2-core machine), so a broken copy fails before any client starts. A pickled copy carries
    the arrays (47 MB): put in Ray's object store once, they are mapped read-only, without a
    copy, by every actor of a node, so the pixels are in memory once per node and no actor
    reads the files again.

    Args:
        root: Folder with the IDX files; ``None`` uses ``$MFED_FASHION_MNIST`` or Debian's path.
        crop: Crop each item to its silhouette's bounding box (tighter placement).

    Raises:
        FileNotFoundError: when a file is missing.
        ValueError: when a file is truncated, corrupt or inconsistent (naming it and the fix).

    """

    num_classes = len(CLASS_NAMES)
    class_names = CLASS_NAMES

    def __init__(self, root: str | Path | None = None, crop: bool = True) -> None:
        self.root = resolve_root(root)
        self.crop = crop
        self._arrays: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for split in FILES:
            self.arrays(split)

    def arrays(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """``(images (N, 28, 28) uint8, labels (N,) uint8)`` of ``split``."""
        if split not in FILES:
            raise ValueError(f"split must be one of {tuple(FILES)}, got {split!r}")
        if split not in self._arrays:
            self._arrays[split] = load_split(self.root, split)
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
