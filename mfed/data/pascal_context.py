"""PASCAL-Context in its multi-task packaging (PASCAL-MT): semseg, parts, saliency, edges, normals.

Format source: the packaging of Maninis et al., "Attentive Single-Tasking of Multiple Tasks"
(CVPR 2019, ASTMT), as read by MTI-Net / Multi-Task-Learning-PyTorch (Vandenhende et al.) and
FedHCA2; summarised in PROTOCOL.md section 3. 4,998 train / 5,105 val images, ids like
``2008_000123``. Layout and encodings are documented in docs/data.md.

Derived here, not stored on disk:

* **edges** from ``pascal-context/trainval/<id>.mat`` (``LabelMap``, 459 Context classes) by
  :func:`mfed.data.edges.label_boundaries`: the reference loaders' Laplacian rule, thinned to
  one pixel (see that module for how it differs from ``skimage.morphology.thin``).
* **parts** from ``human_parts/<id>.mat`` (a PASCAL-Part ``anno`` struct, Chen et al. 2014):
  person objects (``class_ind == 15``) that carry parts are painted, part by part, into the six
  groups of :data:`HUMAN_PART_GROUPS`; all other pixels are 0 (background). Images without any
  person with parts are all 255 (ignore), so they add nothing to the parts loss or mIoU.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from mfed.data.edges import label_boundaries
from mfed.data.folder_dataset import FolderDataset
from mfed.data.image_io import (
    check_shapes,
    decode_normals_rgb,
    read_grey,
    read_mat,
    read_png,
    read_rgb,
)

logger = logging.getLogger(__name__)

TASKS: tuple[str, ...] = ("semseg", "parts", "saliency", "edges", "normals")
IGNORE = 255
PERSON_CLASS_IND = 15  # VOC class index of "person" in PASCAL-Part's class_ind field

DEFAULT_FOLDERS: dict[str, str] = {
    "images": "JPEGImages",
    "splits": "ImageSets/Context",
    "semseg": "semseg/VOC12",
    "semseg_fallback": "semseg/pascal-context",
    "context": "pascal-context/trainval",
    "parts": "human_parts",
    "normals": "normals_distill",
    "saliency": "sal_distill",
    "class_json": "json",
}

# PASCAL-Part person part names -> the 6 groups of the dense MTL literature (ASTMT's
# pascal_part.json, "6 parts" variant): 1 head, 2 torso, 3 upper arms, 4 lower arms (with
# hands), 5 upper legs, 6 lower legs (with feet). 0 is background.
HUMAN_PART_GROUPS: dict[str, int] = {
    **dict.fromkeys(("hair", "head", "lear", "rear", "leye", "reye", "lebrow", "rebrow", "nose", "mouth"), 1),
    **dict.fromkeys(("torso", "neck"), 2),
    **dict.fromkeys(("luarm", "ruarm"), 3),
    **dict.fromkeys(("llarm", "rlarm", "lhand", "rhand"), 4),
    **dict.fromkeys(("luleg", "ruleg"), 5),
    **dict.fromkeys(("llleg", "rlleg", "lfoot", "rfoot"), 6),
}

# file kind -> (folder keys tried in order, extensions tried in order)
_LOCATIONS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "image": (("images",), ("jpg", "png")),
    "semseg": (("semseg", "semseg_fallback"), ("png",)),
    "context": (("context",), ("mat",)),
    "parts": (("parts",), ("mat",)),
    "normals": (("normals",), ("png",)),
    "saliency": (("saliency",), ("png",)),
}


def _first(value: Any) -> Any:
    # loadmat wraps every struct field in (at least) a 1x1 array.
    return np.asarray(value).ravel()[0]


def merge_human_parts(anno: Any, shape: tuple[int, ...], source: str = "anno") -> np.ndarray:
    """Merge a PASCAL-Part ``anno`` struct (as loaded by ``scipy.io.loadmat``) into 6 groups.

    Assumed structure (that of ``Annotations_Part/*.mat``): ``anno.objects`` is a 1xN struct
    array with fields ``class`` (name), ``class_ind`` (VOC index, person = 15), ``mask``
    (instance mask) and ``parts``: a 1xM struct array with ``part_name`` and ``mask``, or an
    empty array when the object has no part annotation.

    Args:
        anno: the ``anno`` variable of the ``.mat`` file.
        shape: ``(H, W)`` of the image.
        source: where ``anno`` came from, for error messages.

    Returns:
        int64 ``(H, W)``: 0 background, 1-6 part groups, or all 255 when no person has parts.

    """
    objects = np.asarray(_first(anno)["objects"]).ravel()
    target: np.ndarray | None = None
    for obj in objects:
        parts = np.asarray(obj["parts"]).ravel()
        if int(_first(obj["class_ind"])) != PERSON_CLASS_IND or parts.size == 0:
            continue
        if target is None:
            target = np.zeros(shape, dtype=np.int64)
        for part in parts:
            name = str(_first(part["part_name"]))
            if name not in HUMAN_PART_GROUPS:
                raise ValueError(f"{source}: unknown PASCAL-Part person part {name!r}")
            mask = np.asarray(part["mask"]).astype(bool)
            if mask.shape != tuple(shape):
                raise ValueError(f"{source}: part {name!r} mask is {mask.shape}, image {shape}")
            target[mask] = HUMAN_PART_GROUPS[name]
    return np.full(shape, IGNORE, dtype=np.int64) if target is None else target


def _read_label_png(path: Path) -> np.ndarray:
    labels = read_png(path)
    if labels.ndim != 2:
        raise ValueError(f"{path}: a label PNG must have one channel, got shape {labels.shape}")
    return labels.astype(np.int64)


def normals_classes_from_json(folder: Path) -> frozenset[int] | None:
    """Context classes on which distilled normals are valid, as the reference loaders define it.

    ``context_classes.json`` maps Context class names to ``LabelMap`` ids; ``nyu_classes.json``
    lists NYU class names. Valid = Context ids of the NYU names (except "unknown"), plus
    "tvmonitor". Returns ``None`` when either file is absent.
    """
    context_file, nyu_file = folder / "context_classes.json", folder / "nyu_classes.json"
    if not (context_file.is_file() and nyu_file.is_file()):
        return None
    context = json.loads(context_file.read_text())
    names = [n for n in json.loads(nyu_file.read_text()) if n in context and n != "unknown"]
    names += ["tvmonitor"] if "tvmonitor" in context else []
    return frozenset(int(context[n]) for n in names)


class PascalContextMT(FolderDataset):
    """PASCAL-Context multi-task dataset read from a local copy; never downloads.

    Args:
        root: folder holding ``JPEGImages/``, ``ImageSets/Context/`` and the task folders.
        split: ``"train"`` or ``"val"`` (``ImageSets/Context/<split>.txt``).
        tasks: subset of :attr:`TASKS` to return next to ``"image"``.
        size: optional ``(H, W)`` every sample is resized to, so that batches stack.
        folders: overrides of :data:`DEFAULT_FOLDERS` (paths relative to ``root``).
        normals_valid_classes: Context ``LabelMap`` ids on which normals are valid; default:
            read from ``<class_json>/{context,nyu}_classes.json`` when present, else all pixels.
        length: use the split's first ``length`` images only (``None``: all).

    """

    NAME = "PASCAL-Context MT"
    TASKS: tuple[str, ...] = TASKS
    DEFAULT_FOLDERS = DEFAULT_FOLDERS
    ROOT_KEY = "data.pool.root (or $MFED_PASCAL_ROOT)"

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        tasks: Iterable[str] = TASKS,
        size: tuple[int, int] | None = None,
        folders: Mapping[str, str] | None = None,
        normals_valid_classes: Iterable[int] | None = None,
        length: int | None = None,
    ) -> None:
        self._given_normal_classes = normals_valid_classes
        super().__init__(root, split, tasks, size, folders, length)

    def prepare(self) -> None:
        """Decide which Context classes carry valid normals (the label maps are then needed)."""
        self._normal_classes = self._normals_classes(self._given_normal_classes)

    def _normals_classes(self, given: Iterable[int] | None) -> frozenset[int] | None:
        if "normals" not in self.tasks:
            return None
        if given is not None:
            return frozenset(int(c) for c in given)
        classes = normals_classes_from_json(self.root / self.folders["class_json"])
        if classes is None:
            logger.warning(
                "PASCAL normals are used on all pixels: no %s/{context,nyu}_classes.json to "
                "restrict them to NYU-like classes as the reference loaders do",
                self.folders["class_json"],
            )
        return classes

    def kinds(self) -> list[str]:
        """The image, each task's file, and the Context label map when edges or normals need it."""
        kinds = ["image", *(t for t in self.tasks if t != "edges")]
        if "edges" in self.tasks or self._normal_classes is not None:
            kinds.append("context")
        return kinds

    def locations(self, kind: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """Folders (tried in order, e.g. semseg's VOC12 then pascal-context) and extensions."""
        return _LOCATIONS[kind]

    def load(self, index: int) -> dict[str, np.ndarray]:
        """Decode one sample (edges and parts derived, see the module docstring)."""
        sample_id, paths = self._ids[index], self._paths[index]
        arrays = {"image": read_rgb(paths["image"])}
        label_map = read_mat(paths["context"], "LabelMap") if "context" in paths else None
        if label_map is not None:
            check_shapes(sample_id, {"image": arrays["image"], "LabelMap": label_map})
        shape = arrays["image"].shape[:2]
        for task in self.tasks:
            if task == "semseg":
                arrays[task] = _read_label_png(paths["semseg"])
            elif task == "parts":
                anno = read_mat(paths["parts"], "anno")
                arrays[task] = merge_human_parts(anno, shape, source=str(paths["parts"]))
            elif task == "saliency":
                grey = read_grey(paths["saliency"]).astype(np.float32) / 255.0
                arrays[task] = (grey > 0.5).astype(np.float32)
            elif task == "edges" and label_map is not None:
                arrays[task] = label_boundaries(label_map).astype(np.float32)
            elif task == "normals":
                arrays[task] = self._normals(read_rgb(paths["normals"]), label_map, shape)
        check_shapes(sample_id, arrays)
        return arrays

    def _normals(self, rgb: np.ndarray, label_map: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray:
        normals = decode_normals_rgb(rgb)
        if self._normal_classes is not None and label_map is not None and rgb.shape[:2] == shape:
            valid = np.isin(label_map, list(self._normal_classes))
            normals[~valid] = 0.0  # distilled normals are trusted on NYU-like classes only
        return normals
