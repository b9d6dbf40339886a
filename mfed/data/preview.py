"""A picture of what each client learns: a few samples beside every task's target."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

LABEL_TASKS = ("semseg", "parts")


def _panel(key: str, value: torch.Tensor) -> tuple[np.ndarray, dict[str, object]]:
    """An image array and imshow arguments for one target."""
    array = value.numpy()
    if key in LABEL_TASKS:
        shown = np.ma.masked_equal(array, 255)  # ignore label shows as blank
        return shown, {"cmap": "tab20", "vmin": 0, "vmax": 19, "interpolation": "nearest"}
    if key == "normals":
        return np.clip((array.transpose(1, 2, 0) + 1) / 2, 0, 1), {"interpolation": "nearest"}
    if key == "depth":
        shown = np.ma.masked_equal(array[0], 0)  # 0 = invalid depth
        return shown, {"cmap": "viridis_r", "interpolation": "nearest"}
    if key == "image":
        image = array.transpose(1, 2, 0) if array.shape[0] == 3 else array[0]
        return image, {"cmap": "gray", "vmin": 0, "vmax": 1}
    return array[0], {"cmap": "gray", "vmin": 0, "vmax": 1, "interpolation": "nearest"}


def preview_grid(dataset: Dataset, indices: Sequence[int], keys: Sequence[str], path: str | Path) -> Path:
    """Save a grid: one row per sample, the image then each dense target in ``keys``.

    Non-dense targets (e.g. ``classification``) are written into the image panel's title.

    Args:
        dataset: Returns sample dicts (the project's sample contract).
        indices: Which samples to show.
        keys: Target names to show, in column order.
        path: PNG file to write.

    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samples = [dataset[int(i)] for i in indices]
    dense = [k for k in keys if samples[0][k].ndim >= 2]
    names = getattr(getattr(dataset, "items", None), "class_names", None)
    fig, axes = plt.subplots(
        len(samples), 1 + len(dense), figsize=(1.8 * (1 + len(dense)), 1.9 * len(samples)), squeeze=False
    )
    for row, (index, sample) in enumerate(zip(indices, samples, strict=True)):
        for col, key in enumerate(["image", *dense]):
            array, style = _panel(key, sample[key])
            axes[row, col].imshow(array, **style)
            axes[row, col].set_axis_off()
            axes[row, col].set_title(key if row == 0 else "", fontsize=9)
        if "classification" in keys and names is not None:
            present = [names[i] for i in np.flatnonzero(sample["classification"].numpy())]
            axes[row, 0].set_title(f"#{index}: " + ", ".join(present), fontsize=7)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
