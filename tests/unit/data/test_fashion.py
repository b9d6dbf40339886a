import gzip
import shutil
import struct

import numpy as np
import pytest

from mfed.cli import main
from mfed.data.fashion import ENV_VAR, FashionMNISTItems, read_idx
from mfed.data.scene_dataset import SceneDataset
from tests.conftest import TINY, write_idx


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


def test_root_from_the_environment_and_a_pickled_copy_needs_no_files(fashion_root, monkeypatch, tmp_path):
    import pickle
    import shutil

    copy = shutil.copytree(fashion_root, tmp_path / "copy")
    monkeypatch.setenv(ENV_VAR, str(copy))
    items = FashionMNISTItems()
    assert items.root == copy
    shipped = pickle.dumps(items)
    shutil.rmtree(copy)  # what an actor on another machine sees: no files, only what was shipped
    clone = pickle.loads(shipped)
    rng_a, rng_b = np.random.default_rng(3), np.random.default_rng(3)
    for split in ("train", "test"):
        a, b = items.sample(rng_a, split), clone.sample(rng_b, split)
        assert a.label == b.label and np.array_equal(a.texture, b.texture)


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


# --- broken copies fail when the items are built, naming the file and the fix ---


@pytest.fixture
def broken_root(fashion_root, tmp_path):
    """A writable copy of the tiny Fashion-MNIST to damage."""
    root = tmp_path / "fashion"
    shutil.copytree(fashion_root, root)
    return root


def _truncate_half(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _write_gz(path, payload: bytes):
    with gzip.open(path, "wb") as f:
        f.write(payload)


def test_truncated_gz_fails_at_construction_naming_the_file(broken_root):
    _truncate_half(broken_root / "train-images-idx3-ubyte.gz")
    with pytest.raises(ValueError) as info:
        FashionMNISTItems(broken_root)
    message = str(info.value)
    assert "train-images-idx3-ubyte.gz is truncated: gzip stream ended early" in message
    assert "dataset-fashion-mnist" in message and "data.pool.items.root" in message and ENV_VAR in message


def test_bad_crc_fails_at_construction_naming_the_file(broken_root):
    path = broken_root / "t10k-labels-idx1-ubyte.gz"
    data = bytearray(path.read_bytes())
    data[-8] ^= 0xFF  # the gzip trailer: CRC32 (4 bytes), then the length
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"t10k-labels-idx1-ubyte.gz is corrupt: CRC check failed"):
        FashionMNISTItems(broken_root)


def test_header_that_disagrees_with_the_payload_names_file_and_shapes(broken_root):
    header = bytes([0, 0, 0x08, 3]) + struct.pack(">3I", 20, 28, 28)
    _write_gz(broken_root / "train-images-idx3-ubyte.gz", header + bytes(19 * 28 * 28))
    with pytest.raises(ValueError) as info:
        FashionMNISTItems(broken_root)
    message = str(info.value)
    assert f"train-images-idx3-ubyte.gz: header says (20, 28, 28) but holds {19 * 28 * 28} values" in message
    assert "dataset-fashion-mnist" in message


def test_truncated_header_and_stray_bytes_are_explained(tmp_path):
    short, stray = tmp_path / "short.gz", tmp_path / "stray.gz"
    _write_gz(short, bytes([0, 0, 0x08, 3, 0, 0]))
    _write_gz(stray, bytes([0, 0, 0x0B, 1]) + struct.pack(">I", 2) + bytes(5))  # int16: 2 values + 1 byte
    with pytest.raises(ValueError, match=r"short.gz is truncated: 6 bytes, shorter than its 3-d IDX header"):
        read_idx(short)
    with pytest.raises(ValueError, match=r"stray.gz: header says \(2,\) but holds 2 values \(\+ 1 stray bytes\)"):
        read_idx(stray)


def test_image_and_label_counts_must_match(broken_root):
    write_idx(broken_root / "t10k-labels-idx1-ubyte.gz", np.arange(9) % 10)
    with pytest.raises(
        ValueError, match=r"t10k-images-idx3-ubyte.gz holds 10 images but .*t10k-labels-idx1-ubyte.gz 9"
    ):
        FashionMNISTItems(broken_root)


def test_swapped_files_and_out_of_range_labels_are_explained(broken_root):
    write_idx(broken_root / "train-labels-idx1-ubyte.gz", np.zeros((20, 28, 28)))
    with pytest.raises(ValueError, match=r"train-labels-idx1-ubyte.gz holds a uint8 array of shape \(20, 28, 28\)"):
        FashionMNISTItems(broken_root)
    write_idx(broken_root / "train-labels-idx1-ubyte.gz", np.full(20, 10))
    with pytest.raises(ValueError, match=r"train-labels-idx1-ubyte.gz holds label 10, expected 0-9"):
        FashionMNISTItems(broken_root)


def test_construction_reads_every_split_once_and_keeps_it(fashion_root):
    items = FashionMNISTItems(fashion_root)
    assert set(items._arrays) == {"train", "test"}
    images, labels = items._arrays["train"]
    assert items.arrays("train")[0] is images
    assert FashionMNISTItems(fashion_root).arrays("train")[0] is images  # one read per process
    assert not images.flags.writeable  # shared between instances: nobody may write into it


def test_a_file_replaced_on_disk_is_read_again(broken_root):
    FashionMNISTItems(broken_root)
    _truncate_half(broken_root / "t10k-images-idx3-ubyte.gz")
    with pytest.raises(ValueError, match="t10k-images-idx3-ubyte.gz is truncated"):
        FashionMNISTItems(broken_root)


def test_cli_reports_a_truncated_file_in_one_line(broken_root, tmp_path, capsys):
    _truncate_half(broken_root / "train-images-idx3-ubyte.gz")
    overrides = [o for o in TINY if not o.startswith("data=")]
    argv = ["train", "data=fashion_scenes", f"data.pool.items.root={broken_root}", *overrides]

    code = main([*argv, f"out_dir={tmp_path / 'run'}"])

    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and "train-images-idx3-ubyte.gz is truncated" in err[0], err
