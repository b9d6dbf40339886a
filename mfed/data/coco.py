"""MS-COCO 2017 dense targets from its instance annotations: semseg, edges, saliency.

Layout (as COCO ships it): ``<root>/train2017/*.jpg``, ``<root>/val2017/*.jpg`` and
``<root>/annotations/instances_{train,val}2017.json``; folders and file names are configurable.
Masks are decoded with pycocotools (polygons for ``iscrowd=0``, RLE for ``iscrowd=1``).

The dense targets are this project's reconstruction (PROTOCOL.md section 3; COCO stores none):

* **semseg**: the 80 categories (ids 1-90 with gaps) mapped to 1-80 in id order, 0 background.
  Crowd regions are painted 255 (ignored) first; then the instances, largest first, so a small
  object in front of a large one keeps its pixels.
* **edges**: the boundaries of that label map (:func:`mfed.data.edges.label_boundaries`, the
  rule used for PASCAL-Context), so boundaries between touching instances of different classes
  count, and so do crowd regions' outlines.
* **saliency**: the union of every object's mask (crowd included) as foreground.

The annotation file is indexed once, when the dataset is built (in the driver); every image
file is checked then (one ``stat`` each), so a missing image fails before any client starts.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from mfed.data.edges import label_boundaries
from mfed.data.image_io import (
    check_root,
    check_size,
    check_split,
    check_tasks,
    incomplete_copy_error,
    merge_folders,
    read_rgb,
    resize_sample,
    to_tensors,
)  # fmt: skip

TASKS: tuple[str, ...] = ("semseg", "edges", "saliency")
IGNORE = 255
DEFAULT_FOLDERS: dict[str, str] = {
    "train_images": "train2017",
    "val_images": "val2017",
    "train_annotations": "annotations/instances_train2017.json",
    "val_annotations": "annotations/instances_val2017.json",
}


def decode_mask(segmentation: Any, height: int, width: int) -> np.ndarray:
    """One annotation's ``segmentation`` (polygons, uncompressed or compressed RLE) as a bool ``(H, W)`` mask."""
    from pycocotools import mask as coco_mask

    with warnings.catch_warnings():  # pycocotools' decode predates numpy 2's copy keyword: harmless
        warnings.filterwarnings("ignore", category=DeprecationWarning, module="pycocotools")
        return np.asarray(coco_mask.decode(_rle(segmentation, height, width)), dtype=bool)


def _rle(segmentation: Any, height: int, width: int) -> Any:
    from pycocotools import mask as coco_mask

    if isinstance(segmentation, list):  # polygons: one RLE each, merged
        rle = coco_mask.merge(coco_mask.frPyObjects(segmentation, height, width))
    elif isinstance(segmentation, dict) and isinstance(segmentation.get("counts"), list):
        rle = coco_mask.frPyObjects(segmentation, height, width)  # uncompressed RLE (crowd)
    else:
        rle = segmentation
    return rle


class CocoDenseMT(Dataset[dict[str, torch.Tensor]]):
    """MS-COCO 2017 with dense semseg, edges and saliency targets built from its instances; never downloads.

    Args:
        root: The COCO folder.
        split: ``train`` or ``val`` (``train2017`` / ``val2017``).
        tasks: Subset of :data:`TASKS` to return next to ``image``.
        size: Optional ``(H, W)`` every sample is resized to, so batches stack.
        folders: Overrides of :data:`DEFAULT_FOLDERS` (paths relative to ``root``).
        limit: Use only the first ``limit`` images of the split (in the file's order); ``None``: all.

    """

    NAME = "MS-COCO 2017"
    TASKS = TASKS
    ROOT_KEY = "data.pool.root (or $MFED_COCO_ROOT)"

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        tasks: Iterable[str] = TASKS,
        size: tuple[int, int] | None = None,
        folders: Mapping[str, str] | None = None,
        limit: int | None = None,
    ) -> None:
        self.root = check_root(self.NAME, root, self.ROOT_KEY)
        self.split = check_split(split)
        self.tasks = check_tasks(tasks, TASKS)
        self.size = check_size(size)
        self.folders = merge_folders(DEFAULT_FOLDERS, folders)
        if limit is not None and limit < 1:
            raise ValueError(f"data.pool.limit must be >= 1 or null (all images), got {limit}")
        annotations = self.root / self.folders[f"{split}_annotations"]
        if not annotations.is_file():
            raise FileNotFoundError(
                f"{self.NAME}: no annotation file {annotations}: point {self.ROOT_KEY} at your copy, or set "
                f"data.pool.folders.{split}_annotations to its path relative to the root"
            )
        try:
            index = json.loads(annotations.read_text())
            categories = sorted(int(c["id"]) for c in index["categories"])
            images = index["images"][:limit]
        except (ValueError, KeyError, TypeError) as err:
            raise ValueError(f"{annotations}: not a COCO instances file ({type(err).__name__}: {err})") from None
        self.classes = {cid: i + 1 for i, cid in enumerate(categories)}  # 0: background
        self.images: list[dict[str, Any]] = [
            {"id": int(im["id"]), "file": str(im["file_name"]), "height": int(im["height"]), "width": int(im["width"])}
            for im in images
        ]
        wanted = {im["id"] for im in self.images}
        self.annotations: dict[int, list[dict[str, Any]]] = {i: [] for i in wanted}
        for ann in index.get("annotations", []):
            if int(ann["image_id"]) in wanted:
                keep = ("segmentation", "category_id", "iscrowd", "area")
                self.annotations[int(ann["image_id"])].append({k: ann.get(k, 0) for k in keep})
        self._check_images()

    @property
    def num_classes(self) -> int:
        """Classes of the semseg target, background included (81 for COCO's 80 categories)."""
        return len(self.classes) + 1

    def _check_images(self) -> None:
        folder = self.root / self.folders[f"{self.split}_images"]
        problems = []
        for im in self.images:
            path = folder / im["file"]
            if not path.is_file():
                problems.append(f"image {im['file']} not found")
            elif path.stat().st_size == 0:
                problems.append(f"image {im['file']} is empty (0 bytes)")
        if problems:
            fix = (f"Fix: point {self.ROOT_KEY} at a complete copy, or set data.pool.folders.{self.split}_images "
                   "to the folder holding the images (relative to the root)")  # fmt: skip
            raise incomplete_copy_error(self.NAME, self.root, problems, len(self.images), fix)

    def __len__(self) -> int:
        return len(self.images)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(split={self.split!r}, n={len(self)}, tasks={self.tasks})"

    def masks(self, index: int) -> list[tuple[dict[str, Any], np.ndarray]]:
        """Every annotation of image ``index`` with its decoded bool ``(H, W)`` mask, in the file's order."""
        im = self.images[index]
        return [
            (ann, decode_mask(ann["segmentation"], im["height"], im["width"])) for ann in self.annotations[im["id"]]
        ]

    def semseg(self, index: int, masks: list[tuple[dict[str, Any], np.ndarray]] | None = None) -> np.ndarray:
        """The ``(H, W)`` int64 label map of image ``index`` (see the module's docs), from its :meth:`masks`."""
        im = self.images[index]
        masks = self.masks(index) if masks is None else masks
        labels = np.zeros((im["height"], im["width"]), dtype=np.int64)
        for _, mask in (m for m in masks if m[0]["iscrowd"]):
            labels[mask] = IGNORE
        for ann, mask in sorted((m for m in masks if not m[0]["iscrowd"]), key=lambda m: -float(m[0]["area"])):
            if int(ann["category_id"]) not in self.classes:
                raise ValueError(f"{self.NAME}: image {im['file']} has an annotation of unknown category "
                                 f"{ann['category_id']}")  # fmt: skip
            labels[mask] = self.classes[int(ann["category_id"])]
        return labels

    def load(self, index: int) -> dict[str, np.ndarray]:
        """Decode image ``index`` and build its targets."""
        im = self.images[index]
        image = read_rgb(self.root / self.folders[f"{self.split}_images"] / im["file"])
        if image.shape[:2] != (im["height"], im["width"]):
            raise ValueError(f"{self.NAME}: {im['file']} is {image.shape[:2]}, its annotations say "
                             f"{(im['height'], im['width'])}")  # fmt: skip
        arrays = {"image": image}
        masks = self.masks(index)  # decoded once for every target
        labels = self.semseg(index, masks) if {"semseg", "edges"} & set(self.tasks) else None
        for task in self.tasks:
            if task == "semseg":
                arrays[task] = labels  # type: ignore[assignment]
            elif task == "edges":
                arrays[task] = label_boundaries(labels).astype(np.float32)  # type: ignore[arg-type]
            elif task == "saliency":
                foreground = np.zeros(image.shape[:2], dtype=bool)
                for _, mask in masks:
                    foreground |= mask
                arrays[task] = foreground.astype(np.float32)
        return arrays

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        sample = to_tensors(self.load(index))
        return resize_sample(sample, self.size) if self.size else sample
