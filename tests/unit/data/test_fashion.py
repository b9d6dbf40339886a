import gzip

import numpy as np
import pytest

from mfed.data.fashion import ENV_VAR, FashionMNISTItems, read_idx
from mfed.data.scene_dataset import SceneDataset


def test_read_idx_round_trips_the_fixture(fashion_root):
    images = read_idx(fashion_root / "train-images-idx3-ubyte.gz")
    labels = read_idx(fashion_root / "train-labels-idx1-ubyte.gz")
    assert images.shape == (20, 28, 28) and images.dtype == np.uint8
    assert labels.tolist() == [i % 10 for i in range(20)]
    assert images[0, 0, 0] == 0 and images[0, 10, 10] >= 60


def test_items_are_cropped_silhouettes_with_their_labels(fashion_root):
    items = FashionMNISTItems(fashion_root)
    item = items.sample(np.random.default_rng(1), "test")
    assert item.mask.shape == (16, 12) and item.mask.all()  # cropped to the 16x12 block, all > 20
    assert 0 <= item.label < 10 and item.texture.max() <= 1.0


def test_root_from_the_environment_and_lazy_pickling(fashion_root, monkeypatch):
    import pickle

    monkeypatch.setenv(ENV_VAR, str(fashion_root))
    items = FashionMNISTItems()
    items.arrays("train")
    clone = pickle.loads(pickle.dumps(items))
    assert clone._arrays == {} and clone.root == fashion_root  # pixels are not shipped


def test_scenes_from_fashion_items_use_test_items_for_test_scenes(fashion_root):
    pool = SceneDataset(FashionMNISTItems(fashion_root), split="test", length=4, size=32)
    scene = pool.scene(0)
    assert set(np.unique(scene["semseg"])) - {0} <= set(range(1, 11))


def test_missing_files_say_how_to_install(tmp_path):
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        FashionMNISTItems(tmp_path)


def test_not_an_idx_file(tmp_path):
    bad = tmp_path / "x.gz"
    with gzip.open(bad, "wb") as f:
        f.write(b"PK\x03\x04junk")
    with pytest.raises(ValueError, match="not an IDX file"):
        read_idx(bad)
