import numpy as np
import pytest

from mfed.data.edges import label_boundaries
from mfed.data.items import SHAPES, ShapeItems, shape_mask
from mfed.data.scene_dataset import SceneDataset
from mfed.data.scenes import BACKGROUND_Z

POOL = SceneDataset(ShapeItems(), length=20, size=40, seed=5)


def test_scenes_are_deterministic_per_seed_and_index():
    a, b = POOL.scene(7), SceneDataset(ShapeItems(), length=20, size=40, seed=5).scene(7)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    other = SceneDataset(ShapeItems(), length=20, size=40, seed=6).scene(7)
    assert not np.array_equal(a["image"], other["image"])
    test_split = SceneDataset(ShapeItems(), split="test", length=20, size=40, seed=5).scene(7)
    assert not np.array_equal(a["image"], test_split["image"])


@pytest.mark.parametrize("index", range(10))
def test_targets_agree_with_each_other(index):
    s = POOL.scene(index)
    fg = s["semseg"] > 0
    assert np.array_equal(s["saliency"][0] > 0, fg)
    assert np.array_equal(s["parts"] > 0, fg)
    assert np.all(s["depth"][0][~fg] == BACKGROUND_Z) and np.all(s["depth"][0][fg] < BACKGROUND_Z)
    np.testing.assert_allclose(np.linalg.norm(s["normals"], axis=0), 1.0, rtol=1e-5)
    assert np.array_equal(s["edges"][0] > 0, label_boundaries(s["semseg"]))
    present = np.unique(s["semseg"][fg]) - 1
    assert np.array_equal(np.flatnonzero(s["classification"]), present)


def test_label_boundaries_are_one_pixel_thick():
    labels = np.zeros((6, 6), int)
    labels[:, 3:] = 2
    edges = label_boundaries(labels)
    assert np.array_equal(np.flatnonzero(edges.any(axis=0)), [2])
    assert edges[:, 2].all()


def test_every_shape_draws_a_non_empty_mask():
    for kind in SHAPES:
        assert shape_mask(kind, 16).sum() > 20, kind


def test_materialize_keeps_image_and_requested_targets():
    shard = POOL.materialize([1, 4, 9], ["depth"])
    assert len(shard) == 3 and set(shard[0]) == {"image", "depth"}
    assert np.array_equal(shard[1]["depth"].numpy(), POOL.scene(4)["depth"])
    with pytest.raises(ValueError, match="no target \\['height'\\]"):
        POOL.materialize([1], ["height"])


def test_bad_dataset_arguments():
    with pytest.raises(ValueError, match="split must be one of"):
        SceneDataset(ShapeItems(), split="val")
    with pytest.raises(ValueError, match="size must be >= 16"):
        SceneDataset(ShapeItems(), size=8)
    with pytest.raises(ValueError, match="does not fit"):
        SceneDataset(ShapeItems(min_size=20, max_size=20), size=16).scene(0)
