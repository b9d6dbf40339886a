"""Multi-task scenes: items on tilted depth planes, composed with a z-buffer.

A scene is an S x S canvas with 1..``max_items`` items at random positions. Each item lies on its
own plane ``z = c + a (x - x0) + b (y - y0)`` (x, y in world units, ``c`` in [2, 8]); the
background is the plane z = 10. Nearer items occlude farther ones. Every target is exact:

============== ============================================ =========================
target         what it is                                   status
============== ============================================ =========================
semseg         background 0, item class + 1                 class: the item's label
saliency       foreground (any item) vs background          derived from the mask
edges          boundaries of the semseg map                 derived (PASCAL-MT rule)
parts          1 = upper half, 2 = lower half of each item  synthetic
depth          the z-buffer                                 synthetic geometry
normals        n ~ (-a, -b, 1), normalised, per plane       synthetic geometry
classification multi-hot presence of each class             the items' labels
============== ============================================ =========================

The image is the item texture shaded by a Lambertian light and dimmed with depth, so geometry
is visible in the pixels. Deterministic per (seed, split, index).
"""

from __future__ import annotations

import numpy as np

from mfed.data.edges import label_boundaries
from mfed.data.items import ItemSource

BACKGROUND_Z = 10.0
WORLD_PER_PIXEL = 8.0 / 64  # a 64-pixel scene spans 8 world units
_LIGHT = np.array([-0.4, -0.5, 0.77]) / np.linalg.norm([-0.4, -0.5, 0.77])
TARGETS = ("semseg", "saliency", "edges", "parts", "depth", "normals", "classification")


def scene_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The generator of one scene: independent of every other (seed, split, index)."""
    return np.random.default_rng([seed, 0 if split == "train" else 1, index])


def compose_scene(
    items: ItemSource, rng: np.random.Generator, split: str, size: int, max_items: int
) -> dict[str, np.ndarray]:
    """Draw one scene and all its targets as numpy arrays (see the module table)."""
    depth = np.full((size, size), BACKGROUND_Z, np.float32)
    semseg = np.zeros((size, size), np.int64)
    parts = np.zeros((size, size), np.int64)
    normals = np.zeros((3, size, size), np.float32)
    normals[2] = 1.0
    albedo = rng.uniform(0.0, 0.12, (size, size)).astype(np.float32)  # faint background noise
    present = np.zeros(items.num_classes, np.float32)
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32) * WORLD_PER_PIXEL
    for _ in range(int(rng.integers(1, max_items + 1))):
        item = items.sample(rng, split)
        h, w = item.mask.shape
        if h > size or w > size:
            raise ValueError(f"item of {h}x{w} pixels does not fit a {size}x{size} scene")
        y0, x0 = int(rng.integers(0, size - h + 1)), int(rng.integers(0, size - w + 1))
        c, (a, b) = rng.uniform(2.0, 8.0), rng.uniform(-0.6, 0.6, 2)
        win = np.s_[y0 : y0 + h, x0 : x0 + w]
        cy, cx = (y0 + h / 2) * WORLD_PER_PIXEL, (x0 + w / 2) * WORLD_PER_PIXEL
        z = c + a * (xs[win] - cx) + b * (ys[win] - cy)
        visible = item.mask & (z < depth[win])
        if not visible.any():
            continue
        depth[win][visible] = z[visible]
        semseg[win][visible] = item.label + 1
        lower = np.broadcast_to(np.arange(h)[:, None] >= _mask_mid_row(item.mask), (h, w))
        parts[win][visible] = np.where(lower, 2, 1)[visible]
        normal = np.array([-a, -b, 1.0]) / np.sqrt(a * a + b * b + 1.0)
        for k in range(3):
            normals[k][win][visible] = normal[k]
        albedo[win][visible] = item.texture[visible] * max(float(normal @ _LIGHT), 0.2)
    present[np.unique(semseg[semseg > 0]) - 1] = 1.0  # only classes that stay visible
    image = albedo * (1.25 - depth / (2 * BACKGROUND_Z))
    return {
        "image": image[None].astype(np.float32),
        "semseg": semseg,
        "saliency": (semseg > 0).astype(np.float32)[None],
        "edges": label_boundaries(semseg).astype(np.float32)[None],
        "parts": parts,
        "depth": depth[None],
        "normals": normals,
        "classification": present,
    }


def _mask_mid_row(mask: np.ndarray) -> float:
    rows = np.flatnonzero(mask.any(axis=1))
    return (rows[0] + rows[-1] + 1) / 2
