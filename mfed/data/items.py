"""Item sources: what a scene is composed of. An item is a silhouette, a texture and a class.

:class:`ShapeItems` draws ten procedural shapes and needs no files; it is the data of the
unit tests and of runs that must not depend on an installed dataset.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np


@dataclass(frozen=True)
class Item:
    """One object to place in a scene.

    Attributes:
        mask: ``(h, w)`` bool silhouette.
        texture: ``(h, w)`` float32 albedo in [0, 1].
        label: Class index in ``[0, num_classes)``.

    """

    mask: np.ndarray
    texture: np.ndarray
    label: int


class ItemSource(Protocol):
    """Anything that hands out items for a split."""

    num_classes: int
    class_names: tuple[str, ...]

    def sample(self, rng: np.random.Generator, split: str) -> Item:
        """Draw one item of ``split`` (``train`` or ``test``) with ``rng``."""
        ...


SHAPES = (
    "disk", "square", "triangle", "ring", "cross",
    "diamond", "bar", "ell", "frame", "half-disk",
)  # fmt: skip


def shape_mask(kind: str, size: int) -> np.ndarray:
    """Return the ``(size, size)`` bool silhouette of a named shape on [-1, 1]^2 coordinates."""
    v, u = np.mgrid[-1 : 1 : complex(0, size), -1 : 1 : complex(0, size)]
    r = np.hypot(u, v)
    au, av = np.abs(u), np.abs(v)
    masks = {
        "disk": r < 0.95,
        "square": np.maximum(au, av) < 0.8,
        "triangle": (v < 0.85) & (au < (v + 0.95) / 2),
        "ring": (r < 0.95) & (r > 0.55),
        "cross": ((au < 0.3) & (av < 0.95)) | ((av < 0.3) & (au < 0.95)),
        "diamond": au + av < 0.95,
        "bar": (av < 0.35) & (au < 0.95),
        "ell": ((u < -0.35) & (av < 0.95) & (u > -0.95)) | ((v > 0.35) & (v < 0.95) & (au < 0.95)),
        "frame": (np.maximum(au, av) < 0.9) & (np.maximum(au, av) > 0.5),
        "half-disk": (r < 0.95) & (v > 0),
    }
    if kind not in masks:
        raise ValueError(f"unknown shape {kind!r}; shapes are {SHAPES}")
    return masks[kind]


class ShapeItems:
    """Ten procedural shapes of random size and albedo with a faint stripe texture.

    Train and test items come from the same distribution (the scene seed keeps them apart).

    Args:
        min_size: Smallest item side in pixels.
        max_size: Largest item side in pixels.

    """

    num_classes = len(SHAPES)
    class_names = SHAPES

    def __init__(self, min_size: int = 14, max_size: int = 26) -> None:
        if not 4 <= min_size <= max_size:
            raise ValueError(f"need 4 <= min_size <= max_size, got {min_size}, {max_size}")
        self.min_size = min_size
        self.max_size = max_size

    def sample(self, rng: np.random.Generator, split: str) -> Item:
        """Draw a random shape (``split`` does not change the distribution)."""
        label = int(rng.integers(self.num_classes))
        size = int(rng.integers(self.min_size, self.max_size + 1))
        mask = shape_mask(SHAPES[label], size)
        freq = rng.uniform(0.3, 0.8)
        stripes = 0.5 + 0.5 * np.sin(freq * np.arange(size))[None, :]
        texture = rng.uniform(0.55, 0.9) * (0.85 + 0.15 * stripes)
        return Item(mask=mask, texture=np.broadcast_to(texture, (size, size)).astype(np.float32), label=label)
