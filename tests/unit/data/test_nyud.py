import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from mfed.data.nyud import TASKS, NYUDv2, shift_nyud_labels
from tests.unit.data.fixtures_benchmarks import H, W, write_nyud


@pytest.fixture
def nyud(tmp_path):
    return write_nyud(tmp_path / "NYUD_MT")


def test_sample_has_image_and_every_task_with_the_contract_types(nyud):
    ds = NYUDv2(nyud.root, split="train")

    sample = ds[0]

    expected = {
        "image": (torch.float32, (3, H, W)),
        "semseg": (torch.int64, (H, W)),
        "depth": (torch.float32, (1, H, W)),
        "normals": (torch.float32, (3, H, W)),
        "edges": (torch.float32, (1, H, W)),
    }
    assert {k: (v.dtype, tuple(v.shape)) for k, v in sample.items()} == expected
    assert ds.ids == tuple(nyud.ids["train"]) and len(ds) == 2 and ds.TASKS == TASKS


def test_png_image_is_exact_and_jpeg_image_is_close(nyud):
    ds = NYUDv2(nyud.root, split="val", tasks=["depth"])

    png, jpg = ds[0]["image"], ds[1]["image"]

    raw0, raw1 = (nyud.raw[i]["image"] for i in nyud.ids["val"])
    assert np.array_equal(np.round(png.permute(1, 2, 0).numpy() * 255), raw0)
    np.testing.assert_allclose(jpg.permute(1, 2, 0).numpy() * 255, raw1, atol=3)


def test_semseg_void_becomes_255_and_classes_shift_down_by_one(nyud):
    ds = NYUDv2(nyud.root, tasks=["semseg"])

    semseg = ds[0]["semseg"].numpy()

    raw = nyud.raw["img_5001"]["semseg"]
    assert np.all(semseg[raw == 0] == 255)
    assert np.all(semseg[raw == 5] == 4) and np.all(semseg[raw == 40] == 39)
    assert np.all(semseg[raw == 1] == 0)
    assert set(ds[0]) == {"image", "semseg"}


def test_shift_rejects_an_already_shifted_copy():
    with pytest.raises(ValueError, match="already shifted"):
        shift_nyud_labels(np.array([[0, 255]], np.uint8))


def test_depth_is_read_in_metres_with_zero_invalid(nyud):
    ds = NYUDv2(nyud.root, tasks=["depth"])

    depth = ds[0]["depth"][0].numpy()

    assert np.array_equal(depth, nyud.raw["img_5001"]["depth"])
    assert np.all(depth[:, 0] == 0)


def test_normals_from_npy_are_exact_and_from_png_decode_with_invalid_zero(nyud):
    ds = NYUDv2(nyud.root, tasks=["normals"])

    from_npy, from_png = ds[0]["normals"].numpy(), ds[1]["normals"].numpy()

    truth = nyud.raw["img_5001"]["normals"].transpose(2, 0, 1)
    assert np.array_equal(from_npy, truth)
    rgb = nyud.raw["img_5002"]["normals_png"].astype(np.float32)
    decoded = np.where(rgb.any(axis=-1, keepdims=True), 2 * rgb / 255 - 1, 0).transpose(2, 0, 1)
    np.testing.assert_allclose(from_png, decoded, atol=1e-6)
    np.testing.assert_allclose(from_png, truth, atol=1.5 / 255)  # 8-bit quantisation
    assert not from_png[:, -1].any()


def test_edges_from_npy_and_png_are_binary(nyud):
    ds = NYUDv2(nyud.root, tasks=["edges"])

    for i in range(2):
        edges = ds[i]["edges"][0].numpy()

        assert np.array_equal(edges, nyud.raw[ds.ids[i]]["edges"].astype(np.float32))


def test_label_with_another_shape_than_the_image_names_id_and_shapes(nyud):
    np.save(nyud.root / "depth" / "img_5002.npy", np.ones((H - 2, W), np.float32))
    ds = NYUDv2(nyud.root, tasks=["semseg", "depth"])

    with pytest.raises(ValueError, match=r"'img_5002': depth has shape \(10, 16\).*\(12, 16\)"):
        ds[1]


def test_unknown_task_and_missing_files_are_explained(nyud, tmp_path):
    with pytest.raises(ValueError, match=r"\['parts'\].*offers \['semseg', 'depth'"):
        NYUDv2(nyud.root, tasks=["parts"])
    with pytest.raises(FileNotFoundError, match="docs/data.md"):
        NYUDv2(tmp_path / "nowhere")
    (nyud.root / "depth" / "img_6001.npy").unlink()
    with pytest.raises(FileNotFoundError, match=r"depth for 'img_6001': depth/img_6001.npy"):
        NYUDv2(nyud.root, split="val")
    with pytest.raises(FileNotFoundError, match="lists/val.txt"):
        NYUDv2(nyud.root, split="val", folders={"splits": "lists"})


def test_resized_samples_stack_into_batches(nyud):
    ds = NYUDv2(nyud.root, size=(5, 7))

    batch = next(iter(DataLoader(ds, batch_size=2)))

    assert batch["image"].shape == (2, 3, 5, 7) and batch["semseg"].shape == (2, 5, 7)
    assert batch["depth"].shape == (2, 1, 5, 7) and batch["edges"].shape == (2, 1, 5, 7)
    norms = batch["normals"].norm(dim=1)
    assert torch.all(((norms - 1).abs() < 1e-5) | (norms == 0))
    assert set(batch["semseg"].unique().tolist()) <= {0, 4, 5, 39, 255}


def test_empty_depth_file_fails_at_construction_naming_it(nyud):
    (nyud.root / "depth" / "img_6002.npy").write_bytes(b"")

    with pytest.raises(FileNotFoundError) as info:
        NYUDv2(nyud.root, split="val", tasks=["depth"])

    message = str(info.value)
    assert "\n" not in message
    assert f"NYUD-v2: 1 of 4 expected file(s) missing or empty under {nyud.root}: " in message
    assert "depth for 'img_6002': depth/img_6002.npy is empty (0 bytes)" in message
    assert "data.pool.root (or $MFED_NYUD_ROOT)" in message and "data.pool.folders.depth" in message
    NYUDv2(nyud.root, split="train", tasks=["depth"])  # the other split is complete


def test_a_length_takes_the_first_images_and_refuses_more_than_the_split_holds(nyud):
    full = NYUDv2(nyud.root, split="train", tasks=["depth"])
    first = NYUDv2(nyud.root, split="train", tasks=["depth"], length=2)
    assert first.ids == full.ids[:2] and len(first) == 2
    assert torch.equal(first[1]["depth"], full[1]["depth"])
    with pytest.raises(ValueError, match=rf"holds {len(full)} images; length={len(full) + 1} asks for more"):
        NYUDv2(nyud.root, split="train", length=len(full) + 1)
