"""Fabricate tiny PASCAL-Context MT, NYUD-v2 and COCO copies in exactly the real on-disk formats.

Each builder writes a few 12x16 samples per split under ``root`` and returns what it wrote, so
tests can compare decoded values pixel for pixel. Formats (PROTOCOL.md section 3):

* PASCAL: ``JPEGImages/<id>.jpg`` (JPEG, lossy: compare images with a tolerance),
  ``ImageSets/Context/{train,val}.txt``, ``semseg/VOC12/<id>.png`` (mode L) or, for the second
  id of each split, only ``semseg/pascal-context/<id>.png`` (the fallback),
  ``pascal-context/trainval/<id>.mat`` (``LabelMap``, uint16, two regions),
  ``human_parts/<id>.mat`` (``anno`` struct, below), ``normals_distill/<id>.png`` (RGB),
  ``sal_distill/<id>.png`` (mode L).
* The ``anno`` struct mimics PASCAL-Part's ``Annotations_Part/*.mat`` as written by MATLAB and
  read by ``scipy.io.loadmat``: a 1x1 struct with ``imname`` and ``objects``; ``objects`` is a
  1xN struct array with ``class``, ``class_ind``, ``mask``, ``parts``; ``parts`` is a 1xM
  struct array with ``part_name`` and ``mask``, or a 0x0 double array when there are none.
* NYUD: ``images/<id>.png`` / ``.jpg``, ``segmentation/<id>.png`` (mode L, 0 void, 1-40),
  ``depth/<id>.npy`` (float32 metres, 0 invalid), ``normals/<id>.npy`` (H, W, 3) or ``.png``,
  ``edge/<id>.npy`` or ``.png``, ``gt_sets/{train,val}.txt``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.io
from PIL import Image

H, W = 12, 16
PASCAL_IDS = {"train": ["2008_000001", "2008_000002"], "val": ["2008_000003", "2008_000004"]}
NYUD_IDS = {"train": ["img_5001", "img_5002"], "val": ["img_6001", "img_6002"]}
CONTEXT_LEFT, CONTEXT_RIGHT, BOUNDARY_COL = 3, 9, 7  # LabelMap: cols <= 7 -> 3, else 9
HEAD_BOX, LLARM_BOX = (slice(0, 3), slice(2, 6)), (slice(5, 8), slice(2, 4))


@dataclass
class Written:
    """What a builder wrote: the root and, per id, the raw arrays stored on disk."""

    root: Path
    ids: dict[str, list[str]]
    raw: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)


def _png(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def _jpg(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, quality=100)


def _npy(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, arr)


def _ids_files(folder: Path, ids: dict[str, list[str]]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for split, names in ids.items():
        (folder / f"{split}.txt").write_text("\n".join(names) + "\n")


def flat_image(k: int) -> np.ndarray:
    """A flat-colour RGB image (JPEG keeps flat colours within a grey level or two)."""
    colour = np.array([40 + 50 * k, 200 - 30 * k, 90], dtype=np.uint8)
    return np.broadcast_to(colour, (H, W, 3)).copy()


def voc_labels(k: int) -> np.ndarray:
    """Background 0, a person block (15) and an ignore (255) border."""
    labels = np.zeros((H, W), dtype=np.uint8)
    labels[2:8, 3 + k : 9 + k] = 15
    labels[:, -1] = 255
    return labels


def context_label_map() -> np.ndarray:
    """Two Context regions split at a vertical boundary after column ``BOUNDARY_COL``."""
    label_map = np.full((H, W), CONTEXT_LEFT, dtype=np.uint16)
    label_map[:, BOUNDARY_COL + 1 :] = CONTEXT_RIGHT
    return label_map


def _struct(dtype_names: tuple[str, ...], rows: list[tuple]) -> np.ndarray:
    arr = np.empty((1, len(rows)), dtype=[(n, "O") for n in dtype_names])
    for j, row in enumerate(rows):
        arr[0, j] = row
    return arr


def _box(box: tuple[slice, slice]) -> np.ndarray:
    mask = np.zeros((H, W), dtype=np.uint8)
    mask[box] = 1
    return mask


def write_anno(path: Path, imname: str, objects: list[dict]) -> None:
    """Write a PASCAL-Part ``anno`` struct; objects: class, class_ind, mask, parts{name: mask}."""
    rows = []
    for obj in objects:
        parts = obj.get("parts") or {}
        part_arr = _struct(("part_name", "mask"), list(parts.items())) if parts else np.zeros((0, 0))
        rows.append((obj["class"], np.array([[obj["class_ind"]]], np.uint8), obj["mask"], part_arr))
    objects_arr = _struct(("class", "class_ind", "mask", "parts"), rows)
    anno = np.empty((1, 1), dtype=[("imname", "O"), ("objects", "O")])
    anno[0, 0] = (imname, objects_arr)
    path.parent.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(path, {"anno": anno})


def person_objects() -> list[dict]:
    """A person with a 'head' and an 'llarm' part, and a dog without parts."""
    person_mask = _box((slice(0, 10), slice(1, 7)))
    parts = {"head": _box(HEAD_BOX), "llarm": _box(LLARM_BOX)}
    dog = {"class": "dog", "class_ind": 12, "mask": _box((slice(8, 12), slice(9, 15)))}
    return [{"class": "person", "class_ind": 15, "mask": person_mask, "parts": parts}, dog]


def normals_rgb() -> np.ndarray:
    """RGB normals: left half (128, 128, 255) ~ +z, right half (255, 128, 128) ~ +x."""
    rgb = np.zeros((H, W, 3), dtype=np.uint8)
    rgb[:, : W // 2] = (128, 128, 255)
    rgb[:, W // 2 :] = (255, 128, 128)
    return rgb


def saliency_grey() -> np.ndarray:
    """Grey saliency with the values around the 0.5 threshold: 127 -> 0 and 128 -> 1."""
    grey = np.zeros((H, W), dtype=np.uint8)
    grey[:, 4:8], grey[:, 8:12], grey[:, 12:] = 127, 128, 255
    return grey


def write_pascal_mt(root: Path, class_json: bool = False) -> Written:
    """Write a tiny PASCAL-MT copy; the first id of each split has a person, the second none."""
    out = Written(root=root, ids={k: list(v) for k, v in PASCAL_IDS.items()})
    _ids_files(root / "ImageSets" / "Context", out.ids)
    for split_ids in out.ids.values():
        for k, sid in enumerate(split_ids):
            raw = {"image": flat_image(k), "semseg": voc_labels(k), "LabelMap": context_label_map()}
            raw |= {"normals": normals_rgb(), "saliency": saliency_grey()}
            _jpg(root / "JPEGImages" / f"{sid}.jpg", raw["image"])
            semseg_dir = "VOC12" if k == 0 else "pascal-context"
            _png(root / "semseg" / semseg_dir / f"{sid}.png", raw["semseg"])
            ctx = root / "pascal-context" / "trainval" / f"{sid}.mat"
            ctx.parent.mkdir(parents=True, exist_ok=True)
            scipy.io.savemat(ctx, {"LabelMap": raw["LabelMap"]})
            cat = [{"class": "cat", "class_ind": 8, "mask": _box((slice(0, 4), slice(0, 4)))}]
            objects = person_objects() if k == 0 else cat
            write_anno(root / "human_parts" / f"{sid}.mat", sid, objects)
            _png(root / "normals_distill" / f"{sid}.png", raw["normals"])
            _png(root / "sal_distill" / f"{sid}.png", raw["saliency"])
            out.raw[sid] = raw
    if class_json:
        (root / "json").mkdir(exist_ok=True)
        context = {"wall": CONTEXT_LEFT, "floor": 44, "sky": CONTEXT_RIGHT, "tvmonitor": 50}
        (root / "json" / "context_classes.json").write_text(json.dumps(context))
        (root / "json" / "nyu_classes.json").write_text(json.dumps(["wall", "floor", "unknown"]))
    return out


def nyud_labels(k: int) -> np.ndarray:
    """NYUD raw labels: void 0 on the top row, class 5 and class 40 blocks, class 1 elsewhere."""
    labels = np.ones((H, W), dtype=np.uint8)
    labels[0, :] = 0
    labels[3:6, 2 + k : 6 + k] = 5
    labels[8:, 10:] = 40
    return labels


def nyud_depth() -> np.ndarray:
    """Depth in metres with an invalid (0) left column."""
    depth = np.linspace(0.5, 4.0, H * W, dtype=np.float32).reshape(H, W)
    depth[:, 0] = 0.0
    return depth


def nyud_normals() -> np.ndarray:
    """Unit normals (H, W, 3), zero (invalid) in the bottom row."""
    normals = np.zeros((H, W, 3), dtype=np.float32)
    normals[..., 2] = 1.0
    normals[:, W // 2 :] = (0.6, 0.0, 0.8)
    normals[-1] = 0.0
    return normals


def nyud_edges() -> np.ndarray:
    """Binary edge map: a vertical line at column 5."""
    edges = np.zeros((H, W), dtype=np.uint8)
    edges[:, 5] = 1
    return edges


def write_nyud(root: Path) -> Written:
    """Write a tiny NYUD-v2 copy; each split's first id uses .png/.npy, the second .jpg/.png."""
    out = Written(root=root, ids={k: list(v) for k, v in NYUD_IDS.items()})
    _ids_files(root / "gt_sets", out.ids)
    for split_ids in out.ids.values():
        for k, sid in enumerate(split_ids):
            raw = {"image": flat_image(k), "semseg": nyud_labels(k), "depth": nyud_depth()}
            raw |= {"normals": nyud_normals(), "edges": nyud_edges()}
            _png(root / "segmentation" / f"{sid}.png", raw["semseg"])
            _npy(root / "depth" / f"{sid}.npy", raw["depth"])
            if k == 0:
                _png(root / "images" / f"{sid}.png", raw["image"])
                _npy(root / "normals" / f"{sid}.npy", raw["normals"])
                _npy(root / "edge" / f"{sid}.npy", raw["edges"].astype(np.float32))
            else:
                _jpg(root / "images" / f"{sid}.jpg", raw["image"])
                rgb = np.round((raw["normals"] + 1.0) * 127.5).astype(np.uint8)
                rgb[raw["normals"].any(axis=-1) == 0] = 0  # invalid pixels stored as (0, 0, 0)
                raw["normals_png"] = rgb
                _png(root / "normals" / f"{sid}.png", rgb)
                _png(root / "edge" / f"{sid}.png", raw["edges"] * 255)
            out.raw[sid] = raw
    return out


COCO_H, COCO_W = 20, 30


def square(x0: int, y0: int, x1: int, y1: int) -> list[list[int]]:
    """A polygon (COCO's flat [x, y, ...]) covering pixels x0..x1-1, y0..y1-1."""
    return [[x0, y0, x1, y0, x1, y1, x0, y1]]


def write_coco(root: Path, splits: tuple[str, ...] = ("train", "val")) -> Path:
    """Twelve images per split (two annotated); categories 1, 18, 90 (gaps, as COCO's ids).

    Image ``a.jpg`` holds a large person (polygon), a small dog in front of it (polygon) and a
    crowd (uncompressed-to-compressed RLE from pycocotools); ``b.png`` and ten blanks hold none.
    """
    from pycocotools import mask as coco_mask

    h, w = COCO_H, COCO_W
    crowd = np.zeros((h, w), np.uint8, order="F")
    crowd[15:20, 0:5] = 1
    rle = coco_mask.encode(crowd)
    rle["counts"] = rle["counts"].decode()
    files = ["a.jpg", "b.png", *(f"c{i}.png" for i in range(10))]
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    for split in splits:
        (root / f"{split}2017").mkdir(parents=True, exist_ok=True)
        for name in files:
            Image.fromarray(np.full((h, w, 3), 128, np.uint8)).save(root / f"{split}2017" / name)
        index = {
            "images": [{"id": 7 + i, "file_name": name, "height": h, "width": w} for i, name in enumerate(files)],
            "categories": [{"id": 90, "name": "toothbrush"}, {"id": 1, "name": "person"}, {"id": 18, "name": "dog"}],
            "annotations": [
                {"id": 1, "image_id": 7, "category_id": 18, "iscrowd": 0, "area": 16.0,
                 "segmentation": square(4, 4, 8, 8)},
                {"id": 2, "image_id": 7, "category_id": 1, "iscrowd": 0, "area": 200.0,
                 "segmentation": square(0, 0, 20, 10)},
                {"id": 3, "image_id": 7, "category_id": 90, "iscrowd": 1, "area": 25.0, "segmentation": rle},
            ],
        }  # fmt: skip
        (root / "annotations" / f"instances_{split}2017.json").write_text(json.dumps(index))
    return root
