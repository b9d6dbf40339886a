import numpy as np
import pytest

from mfed.data.items import ShapeItems
from mfed.data.scene_dataset import SceneDataset
from mfed.data.sharding import IID, Dirichlet, QuantitySkew

POOL = SceneDataset(ShapeItems(), length=60, size=32)


def test_scene_labels_are_the_dominant_visible_class():
    labels = POOL.labels()
    scene = POOL.scene(3)
    counts = np.bincount(scene["semseg"].ravel(), minlength=11)[1:]
    assert labels[3] == np.argmax(counts) and labels.shape == (60,)


@pytest.mark.parametrize("scheme", [IID(), Dirichlet(alpha=100.0), QuantitySkew(alpha=5.0)])
def test_every_scheme_covers_the_pool_once(scheme):
    shards = scheme(POOL, num_clients=4, seed=0, min_per_client=3)
    merged = np.sort(np.concatenate(shards))
    assert np.array_equal(merged, np.arange(60)) and min(map(len, shards)) >= 3


def test_dirichlet_needs_labels_and_says_what_else_works():
    with pytest.raises(ValueError, match="needs a dataset with labels\\(\\).*use data.partition=iid"):
        Dirichlet()(list(range(10)), num_clients=2, seed=0, min_per_client=1)
    with pytest.raises(ValueError, match="alpha must be > 0"):
        Dirichlet(alpha=0)
