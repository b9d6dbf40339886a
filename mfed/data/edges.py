"""Edge targets from a label map, the way the PASCAL multi-task packaging derives them.

PASCAL-MT (Maninis et al., as used by MTI-Net and FedHCA2) marks a pixel as edge where the
Laplacian of the label map is non-zero, then thins the result to one pixel. Here a pixel is an
edge where its label differs from its right or lower neighbour: this is the non-zero Laplacian
set already reduced to one side of each boundary, i.e. a one-pixel-thick boundary.
"""

from __future__ import annotations

import numpy as np


def label_boundaries(labels: np.ndarray) -> np.ndarray:
    """Return a ``(H, W)`` bool map of one-pixel-thick boundaries between different labels."""
    if labels.ndim != 2:
        raise ValueError(f"labels must be (H, W), got shape {labels.shape}")
    edges = np.zeros(labels.shape, dtype=bool)
    edges[:, :-1] |= labels[:, :-1] != labels[:, 1:]
    edges[:-1, :] |= labels[:-1, :] != labels[1:, :]
    return edges
