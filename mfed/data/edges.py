"""Edge targets from a label map, the way the PASCAL multi-task packaging derives them.

PASCAL-MT (as used by MTI-Net and FedHCA2) marks a pixel as edge where the Laplacian of the label
map is non-zero, then thins the result with ``skimage.morphology.thin``. Here: the same Laplacian
(:func:`scipy.ndimage.laplace`, mirrored borders), kept only where the label differs from the
right or lower neighbour, which leaves one pixel per boundary without a thinning pass. The edge
may sit one pixel to the other side of a boundary compared with skimage's thinning.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def label_boundaries(labels: np.ndarray) -> np.ndarray:
    """Return a ``(H, W)`` bool map of one-pixel-thick boundaries between different labels."""
    labels = np.asarray(labels).astype(np.int64)  # signed: uint16 would wrap in the Laplacian
    if labels.ndim != 2:
        raise ValueError(f"labels must be (H, W), got shape {labels.shape}")
    one_side = np.zeros(labels.shape, dtype=bool)
    one_side[:, :-1] |= labels[:, :-1] != labels[:, 1:]
    one_side[:-1, :] |= labels[:-1, :] != labels[1:, :]
    return one_side & (ndimage.laplace(labels, mode="mirror") != 0)
