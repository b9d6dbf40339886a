"""Shared I/O and sample helpers for the on-disk benchmarks (PASCAL-Context MT, NYUD-v2).

Formats follow the dense multi-task packaging of Maninis et al. (ASTMT) as reused by
MTI-Net / Multi-Task-Learning-PyTorch and FedHCA2 (see PROTOCOL.md section 3): JPEG/PNG
images, single-channel PNG label maps (palette indices are read as-is), ``.npy`` arrays and
MATLAB ``.mat`` files read with :func:`scipy.io.loadmat`. Nothing here downloads anything.
"""

from __future__ import annotations

import stat
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import scipy.io
import torch
import torch.nn.functional as F
from PIL import Image

DOCS_HINT = "see docs/data.md for the expected layout"


def read_rgb(path: Path) -> np.ndarray:
    """Read an image file as ``(H, W, 3)`` uint8 RGB (grey or palette images are expanded)."""
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"), dtype=np.uint8)


def read_png(path: Path) -> np.ndarray:
    """Read a PNG without colour conversion: palette PNGs give their indices, i.e. the labels."""
    with Image.open(path) as img:
        return np.asarray(img)


def read_grey(path: Path) -> np.ndarray:
    """Read an image as ``(H, W)`` uint8 grey levels (RGB inputs are converted by luminance)."""
    with Image.open(path) as img:
        grey = img if img.mode == "L" else img.convert("L")
        return np.asarray(grey, dtype=np.uint8)


def read_npy(path: Path) -> np.ndarray:
    """Load a ``.npy`` array without allowing pickled objects."""
    return np.load(path, allow_pickle=False)


def read_mat(path: Path, key: str) -> Any:
    """Return variable ``key`` of a MATLAB file, raising a ``KeyError`` that names the file."""
    content = scipy.io.loadmat(path)
    if key not in content:
        found = sorted(k for k in content if not k.startswith("__"))
        raise KeyError(f"{path} has no variable {key!r}; it holds {found}")
    return content[key]


def decode_normals_rgb(rgb: np.ndarray) -> np.ndarray:
    """Decode an 8-bit normal map ``v -> 2v/255 - 1`` to ``(H, W, 3)`` float32.

    A raw ``(0, 0, 0)`` pixel cannot encode a unit vector, so it is read as invalid (all-zero).
    """
    if rgb.ndim != 3 or rgb.shape[-1] < 3:
        raise ValueError(f"a normal map image must be (H, W, 3), got shape {rgb.shape}")
    rgb = rgb[..., :3]
    normals = 2.0 * rgb.astype(np.float32) / 255.0 - 1.0
    normals[~rgb.any(axis=-1)] = 0.0
    return normals


def locate_file(folder: Path, stem: str, exts: Sequence[str]) -> tuple[Path, int] | None:
    """``(folder/stem.<ext>, size in bytes)`` for the first extension that is a file, else ``None``.

    One ``stat`` per extension tried; nothing is opened.
    """
    for ext in exts:
        path = folder / f"{stem}.{ext}"
        try:
            info = path.stat()
        except OSError:
            continue
        if stat.S_ISREG(info.st_mode):
            return path, info.st_size
    return None


def read_id_list(path: Path) -> list[str]:
    """Read a split file (one id per line; blank lines skipped)."""
    if not path.is_file():
        raise FileNotFoundError(f"split list {path} not found; {DOCS_HINT}")
    ids = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if not ids:
        raise ValueError(f"split list {path} is empty")
    return ids


def incomplete_copy_error(
    dataset: str, root: Path, problems: Sequence[str], expected: int, fix: str
) -> FileNotFoundError:
    """One line naming the root, how many of the ``expected`` files are bad, the first few, and ``fix``."""
    shown = "; ".join(problems[:5]) + (f"; ... and {len(problems) - 5} more" if len(problems) > 5 else "")
    return FileNotFoundError(
        f"{dataset}: {len(problems)} of {expected} expected file(s) missing or empty under {root}: "
        f"{shown}. {fix}; {DOCS_HINT}"
    )


def check_root(dataset: str, root: str | Path, root_key: str = "the root") -> Path:
    """Return ``root`` as a Path, raising ``FileNotFoundError`` when it is not a directory."""
    path = Path(root).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(
            f"{dataset} root {path} does not exist or is not a directory: point {root_key} at your "
            f"copy; this project never downloads data, {DOCS_HINT}"
        )
    return path


def check_split(split: str, allowed: Sequence[str] = ("train", "val")) -> str:
    """Validate the split name."""
    if split not in allowed:
        raise ValueError(f"split must be one of {list(allowed)}, got {split!r}")
    return split


def check_tasks(tasks: str | Iterable[str], allowed: Sequence[str]) -> tuple[str, ...]:
    """Validate requested tasks against those a dataset offers; keeps order, drops repeats."""
    requested = (tasks,) if isinstance(tasks, str) else tuple(tasks)
    if not requested:
        raise ValueError(f"tasks must name at least one of {list(allowed)}")
    bad = [t for t in requested if t not in allowed]
    if bad:
        raise ValueError(f"unknown task(s) {bad}; this dataset offers {list(allowed)}")
    return tuple(dict.fromkeys(requested))


def check_size(size: Sequence[int] | None) -> tuple[int, int] | None:
    """Validate an optional ``(H, W)`` output size."""
    if size is None:
        return None
    out = tuple(int(s) for s in size)
    if len(out) != 2 or min(out) < 1:
        raise ValueError(f"size must be (H, W) with positive ints or None, got {size!r}")
    return out[0], out[1]


def merge_folders(defaults: Mapping[str, str], folders: Mapping[str, str] | None) -> dict[str, str]:
    """Overlay user folder names on the defaults; unknown keys are an error, not ignored."""
    folders = dict(folders or {})
    unknown = sorted(set(folders) - set(defaults))
    if unknown:
        raise ValueError(f"unknown folder key(s) {unknown}; known keys: {sorted(defaults)}")
    return {**defaults, **folders}


def check_shapes(sample_id: str, arrays: Mapping[str, np.ndarray]) -> None:
    """Raise ``ValueError`` unless every target has the image's ``(H, W)`` (HWC/HW layouts)."""
    image_hw = arrays["image"].shape[:2]
    for name, arr in arrays.items():
        if arr.shape[:2] != image_hw:
            raise ValueError(
                f"sample {sample_id!r}: {name} has shape {tuple(arr.shape)} but the image is "
                f"{tuple(image_hw)} (H, W); the copy's files do not belong together"
            )


def to_tensors(arrays: Mapping[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """Convert decoded ``(H, W[, C])`` arrays to the sample contract's tensors.

    ``image`` uint8 -> float32 ``(3, H, W)`` in [0, 1]; ``semseg``/``parts`` -> int64 ``(H, W)``;
    ``normals`` -> float32 ``(3, H, W)``; every other target -> float32 ``(1, H, W)``.
    """
    out: dict[str, torch.Tensor] = {}
    for name, arr in arrays.items():
        if name == "image":
            out[name] = torch.from_numpy(arr.astype(np.float32) / 255.0).permute(2, 0, 1)
        elif name in ("semseg", "parts"):
            out[name] = torch.from_numpy(arr.astype(np.int64))
        elif name == "normals":
            out[name] = torch.from_numpy(arr.astype(np.float32)).permute(2, 0, 1)
        else:
            out[name] = torch.from_numpy(arr.astype(np.float32))[None]
        out[name] = out[name].contiguous()
    return out


def _nearest_index(n_in: int, n_out: int) -> torch.Tensor:
    # Pixel-centre sampling (like "nearest-exact"): works on any dtype, keeps labels exact.
    idx = ((torch.arange(n_out, dtype=torch.float64) + 0.5) * n_in / n_out).floor().long()
    return idx.clamp_(0, n_in - 1)


def resize_nearest(t: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Nearest-neighbour resize of the last two dims; values are copied, never mixed."""
    rows, cols = _nearest_index(t.shape[-2], size[0]), _nearest_index(t.shape[-1], size[1])
    return t[..., rows, :][..., cols].contiguous()


def resize_bilinear(t: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear (antialiased when shrinking) resize of a float ``(C, H, W)`` tensor."""
    out = F.interpolate(t[None], size=size, mode="bilinear", align_corners=False, antialias=True)
    return out[0]


def resize_normals(t: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize ``(3, H, W)`` normals bilinearly, then re-normalise to unit length.

    Validity is resized by nearest neighbour, so invalid (all-zero) pixels stay exactly zero and
    valid pixels next to them keep a unit vector instead of one shrunk by the blend with zero.
    """
    valid = resize_nearest(t.abs().sum(dim=0) > 0, size)
    out = resize_bilinear(t, size)
    norm = out.norm(dim=0, keepdim=True)
    out = torch.where(norm > 0, out / norm.clamp_min(1e-12), out)
    return out * valid


def resize_sample(sample: Mapping[str, torch.Tensor], size: tuple[int, int]) -> dict[str, torch.Tensor]:
    """Resize every entry of a sample: bilinear image, re-normalised normals, nearest the rest."""
    out: dict[str, torch.Tensor] = {}
    for name, t in sample.items():
        if name == "image":
            out[name] = resize_bilinear(t, size).clamp_(0.0, 1.0)
        elif name == "normals":
            out[name] = resize_normals(t, size)
        else:
            out[name] = resize_nearest(t, size)
    return out
