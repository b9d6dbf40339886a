"""COCO 2017 dense targets, on a copy fabricated in the real formats (instances JSON, polygons and RLE)."""

import numpy as np
import pytest
from pycocotools import mask as coco_mask

from mfed.data.coco import IGNORE, CocoDenseMT
from tests.unit.data.fixtures_benchmarks import COCO_H as H
from tests.unit.data.fixtures_benchmarks import COCO_W as W
from tests.unit.data.fixtures_benchmarks import square, write_coco


@pytest.fixture
def coco_root(tmp_path):
    return write_coco(tmp_path / "coco", ("val",))


def test_semseg_paints_larger_first_and_ignores_crowds(coco_root):
    data = CocoDenseMT(coco_root, split="val")
    labels = data.semseg(0)
    assert data.num_classes == 4 and data.classes == {1: 1, 18: 2, 90: 3}
    # the polygon of the person covers x 0..20, y 0..10 (pycocotools rasterises the edge pixels too)
    person = coco_mask.decode(coco_mask.merge(coco_mask.frPyObjects(square(0, 0, 20, 10), H, W))).astype(bool)
    dog = coco_mask.decode(coco_mask.merge(coco_mask.frPyObjects(square(4, 4, 8, 8), H, W))).astype(bool)
    assert (labels[dog] == 2).all()  # the small dog stays in front of the large person
    assert (labels[person & ~dog] == 1).all()
    assert (labels[15:20, 0:5] == IGNORE).all()
    assert (labels[~person & ~dog] != 1).all() and labels[19, 29] == 0
    assert not data.semseg(1).any()  # an image without annotations is all background


def test_edges_and_saliency_follow_the_label_map_and_the_objects(coco_root):
    sample = CocoDenseMT(coco_root, split="val", size=(10, 15))[0]
    assert set(sample) == {"image", "semseg", "edges", "saliency"}
    assert sample["image"].shape == (3, 10, 15) and sample["semseg"].shape == (10, 15)
    full = CocoDenseMT(coco_root, split="val").load(0)
    labels = full["semseg"]
    # edges where a pixel differs from its right or lower neighbour (and the Laplacian is non-zero)
    assert full["edges"].any() and not full["edges"][labels == labels].all()
    for y, x in zip(*np.nonzero(full["edges"]), strict=True):
        right = x + 1 < W and labels[y, x] != labels[y, x + 1]
        down = y + 1 < H and labels[y, x] != labels[y + 1, x]
        assert right or down
    # saliency: every object, the crowd included
    assert (full["saliency"] == ((labels > 0) | (labels == IGNORE))).all()


def test_a_missing_image_or_annotation_file_is_named(coco_root):
    (coco_root / "val2017" / "b.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"image b.png not found.*data.pool.folders.val_images"):
        CocoDenseMT(coco_root, split="val")
    with pytest.raises(FileNotFoundError, match=r"no annotation file .*instances_train2017.json"):
        CocoDenseMT(coco_root, split="train")
    (coco_root / "annotations" / "instances_val2017.json").write_text("{}")
    with pytest.raises(ValueError, match="not a COCO instances file"):
        CocoDenseMT(coco_root, split="val")


def test_a_federation_runs_on_the_fabricated_copy(coco_root, tiny_cfg):
    from mfed.run import build
    from tests.conftest import TINY

    base = [o for o in TINY if not o.startswith("data.")]
    cfg = tiny_cfg("data=coco", "task_mix=coco_like", f"data.pool.root={coco_root}", "data.pool.split=val",
                   "data.test=null", "federation.clients_per_task=1", "data.min_per_client=1",
                   "data.val_fraction=0.5", "federation.rounds=1", base=base)  # fmt: skip
    history = build(cfg).run()
    assert {"val/semseg/mIoU", "val/edges/odsF", "val/saliency/maxF"} <= set(history[-1])
