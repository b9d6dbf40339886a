import shutil

import numpy as np
import pytest
import torch
from scipy import ndimage

from mfed.data.edges import label_boundaries
from mfed.data.pascal_context import (
    HUMAN_PART_GROUPS,
    TASKS,
    PascalContextMT,
    merge_human_parts,
)
from tests.unit.data.fixtures_benchmarks import (
    BOUNDARY_COL,
    HEAD_BOX,
    LLARM_BOX,
    H,
    W,
    write_anno,
    write_pascal_mt,
)


@pytest.fixture
def pascal(tmp_path):
    return write_pascal_mt(tmp_path / "PASCAL_MT")


def test_sample_has_image_and_every_task_with_the_contract_types(pascal):
    ds = PascalContextMT(pascal.root, split="train")

    sample = ds[0]

    assert set(sample) == {"image", *TASKS}
    expected = {
        "image": (torch.float32, (3, H, W)),
        "semseg": (torch.int64, (H, W)),
        "parts": (torch.int64, (H, W)),
        "saliency": (torch.float32, (1, H, W)),
        "edges": (torch.float32, (1, H, W)),
        "normals": (torch.float32, (3, H, W)),
    }
    assert {k: (v.dtype, tuple(v.shape)) for k, v in sample.items()} == expected
    assert len(ds) == 2 and ds.ids == tuple(pascal.ids["train"]) and ds.TASKS == TASKS


def test_image_is_scaled_to_unit_range(pascal):
    ds = PascalContextMT(pascal.root, split="val", tasks=["semseg"])

    image = ds[1]["image"]

    raw = pascal.raw[pascal.ids["val"][1]]["image"]
    assert image.min() >= 0 and image.max() <= 1
    # JPEG is lossy even on flat colours: allow a few grey levels.
    np.testing.assert_allclose(image.permute(1, 2, 0).numpy() * 255, raw, atol=3)


def test_semseg_values_survive_and_fall_back_to_pascal_context_folder(pascal):
    ds = PascalContextMT(pascal.root, split="train", tasks=["semseg"])

    voc, fallback = ds[0]["semseg"], ds[1]["semseg"]

    assert set(ds[0]) == {"image", "semseg"}
    assert np.array_equal(voc.numpy(), pascal.raw["2008_000001"]["semseg"])
    assert np.array_equal(fallback.numpy(), pascal.raw["2008_000002"]["semseg"])
    assert {0, 15, 255} <= set(voc.unique().tolist())


def test_saliency_thresholds_at_half(pascal):
    ds = PascalContextMT(pascal.root, tasks=["saliency"])

    sal = ds[0]["saliency"][0].numpy()

    grey = pascal.raw["2008_000001"]["saliency"]
    assert np.array_equal(sal, (grey >= 128).astype(np.float32))
    assert sal[0, 5] == 0 and sal[0, 9] == 1  # 127 -> 0, 128 -> 1


def test_normals_decode_2v_over_255_minus_1_unmasked_without_class_json(pascal):
    ds = PascalContextMT(pascal.root, tasks=["normals"])

    normals = ds[0]["normals"].numpy()

    rgb = pascal.raw["2008_000001"]["normals"].astype(np.float32)
    np.testing.assert_allclose(normals, (2 * rgb / 255 - 1).transpose(2, 0, 1), atol=1e-6)
    np.testing.assert_allclose(normals[:, 0, 0], [1 / 255, 1 / 255, 1.0], atol=1e-6)


def test_normals_are_zero_outside_nyu_like_classes(tmp_path):
    written = write_pascal_mt(tmp_path, class_json=True)
    ds = PascalContextMT(written.root, tasks=["normals"])

    normals = ds[0]["normals"].numpy()

    # LabelMap left region ("wall") is valid, right region ("sky") is not.
    assert np.abs(normals[:, :, : BOUNDARY_COL + 1]).sum(axis=0).min() > 0
    assert not normals[:, :, BOUNDARY_COL + 1 :].any()
    masked = PascalContextMT(written.root, tasks=["normals"], normals_valid_classes=[9])[0]
    assert not masked["normals"][:, :, : BOUNDARY_COL + 1].any()


def test_edges_lie_exactly_on_the_boundary_one_pixel_thick(pascal):
    ds = PascalContextMT(pascal.root, tasks=["edges"])

    edges = ds[0]["edges"][0].numpy()

    expected = np.zeros((H, W), np.float32)
    expected[:, BOUNDARY_COL] = 1
    assert np.array_equal(edges, expected)
    label_map = pascal.raw["2008_000001"]["LabelMap"].astype(np.int64)
    assert np.all(ndimage.laplace(label_map, mode="mirror")[edges > 0] != 0)


def test_context_edges_horizontal_and_closed_region():
    labels = np.zeros((8, 8), np.uint16)
    labels[2:5, 3:6] = 7  # uint16: the Laplacian must not wrap around

    edges = label_boundaries(labels)

    ring = np.zeros((8, 8), bool)
    ring[1, 3:6] = ring[2:5, 2] = True  # above and left of the square (outside)
    ring[2:4, 5] = ring[4, 3:6] = True  # its own right column and bottom row (inside)
    assert np.array_equal(edges, ring)
    assert np.array_equal(label_boundaries(labels.T), ring.T)
    assert not label_boundaries(np.full((4, 4), 3)).any()


def test_parts_merge_head_and_lower_arm_into_groups_1_and_4(pascal):
    ds = PascalContextMT(pascal.root, tasks=["parts"])

    parts = ds[0]["parts"].numpy()

    expected = np.zeros((H, W), np.int64)
    expected[HEAD_BOX], expected[LLARM_BOX] = 1, 4
    assert np.array_equal(parts, expected)  # the dog and part-less person pixels are background


def test_parts_of_an_image_without_person_are_all_ignore(pascal):
    ds = PascalContextMT(pascal.root, split="val", tasks=["parts"])

    parts = ds[1]["parts"]

    assert torch.all(parts == 255)


def test_merge_human_parts_edge_cases(tmp_path):
    import scipy.io

    empty = np.empty((1, 1), dtype=[("imname", "O"), ("objects", "O")])
    empty[0, 0] = ("x", np.zeros((0, 0)))
    scipy.io.savemat(tmp_path / "e.mat", {"anno": empty})
    anno = scipy.io.loadmat(tmp_path / "e.mat")["anno"]
    bad = np.ones((H, W), np.uint8)
    person = {"class": "person", "class_ind": 15, "mask": bad, "parts": {"tail": bad}}
    write_anno(tmp_path / "b.mat", "b", [person])

    out = merge_human_parts(anno, (H, W))

    assert np.all(out == 255)
    with pytest.raises(ValueError, match="unknown PASCAL-Part person part 'tail'"):
        merge_human_parts(scipy.io.loadmat(tmp_path / "b.mat")["anno"], (H, W))
    assert sorted(set(HUMAN_PART_GROUPS.values())) == [1, 2, 3, 4, 5, 6]
    assert len(HUMAN_PART_GROUPS) == 24


def test_unknown_task_split_size_and_folder_are_rejected(pascal):
    with pytest.raises(ValueError, match=r"unknown task\(s\) \['depth'\].*offers \['semseg'"):
        PascalContextMT(pascal.root, tasks=["semseg", "depth"])
    with pytest.raises(ValueError, match="split must be one of"):
        PascalContextMT(pascal.root, split="test")
    with pytest.raises(ValueError, match="size must be"):
        PascalContextMT(pascal.root, size=(0, 4))
    with pytest.raises(ValueError, match=r"unknown folder key\(s\) \['sal'\]"):
        PascalContextMT(pascal.root, folders={"sal": "x"})


def test_missing_root_split_list_and_files_are_explained(pascal, tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist.*docs/data.md"):
        PascalContextMT(tmp_path / "nowhere")
    (pascal.root / "sal_distill" / "2008_000002.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"saliency for '2008_000002': sal_distill/"):
        PascalContextMT(pascal.root, split="train")
    PascalContextMT(pascal.root, split="train", tasks=["semseg"])  # saliency not requested
    (pascal.root / "ImageSets" / "Context" / "val.txt").unlink()
    with pytest.raises(FileNotFoundError, match="ImageSets/Context/val.txt"):
        PascalContextMT(pascal.root, split="val")


def test_configurable_folders(pascal):
    (pascal.root / "sal_distill").rename(pascal.root / "saliency_maps")

    ds = PascalContextMT(pascal.root, tasks=["saliency"], folders={"saliency": "saliency_maps"})

    assert ds[0]["saliency"].shape == (1, H, W)


def test_label_with_another_shape_than_the_image_names_id_and_shapes(pascal):
    from PIL import Image

    taller = np.zeros((H + 1, W), np.uint8)
    Image.fromarray(taller).save(pascal.root / "sal_distill" / "2008_000001.png")
    ds = PascalContextMT(pascal.root, tasks=["saliency"])

    with pytest.raises(ValueError, match=r"'2008_000001': saliency has shape \(13, 16\).*12, 16"):
        ds[0]


def test_resize_gives_the_requested_shapes_and_keeps_label_values(pascal):
    ds = PascalContextMT(pascal.root, size=(6, 8))

    sample = ds[0]

    assert sample["image"].shape == (3, 6, 8) and sample["normals"].shape == (3, 6, 8)
    assert all(sample[k].shape == (6, 8) for k in ("semseg", "parts"))
    assert all(sample[k].shape == (1, 6, 8) for k in ("saliency", "edges"))
    assert set(sample["semseg"].unique().tolist()) <= {0, 15, 255}
    assert set(sample["edges"].unique().tolist()) <= {0.0, 1.0}
    np.testing.assert_allclose(sample["normals"].norm(dim=0), 1.0, atol=1e-5)


def test_missing_mask_fails_at_construction_in_one_line_naming_root_count_file_and_fix(pascal):
    (pascal.root / "semseg" / "VOC12" / "2008_000001.png").unlink()
    (pascal.root / "sal_distill" / "2008_000002.png").write_bytes(b"")

    with pytest.raises(FileNotFoundError) as info:
        PascalContextMT(pascal.root, split="train")

    message = str(info.value)
    assert "\n" not in message  # the CLI prints it as one line
    assert f"PASCAL-Context MT: 2 of 12 expected file(s) missing or empty under {pascal.root}: " in message
    assert (
        "semseg for '2008_000001': semseg/VOC12/2008_000001.png or semseg/pascal-context/2008_000001.png not found"
        in message
    )
    assert "saliency for '2008_000002': sal_distill/2008_000002.png is empty (0 bytes)" in message
    assert "data.pool.root (or $MFED_PASCAL_ROOT)" in message
    assert "data.pool.folders.semseg, data.pool.folders.semseg_fallback, data.pool.folders.saliency" in message


def test_many_bad_files_are_counted_and_the_first_five_shown(pascal):
    shutil.rmtree(pascal.root / "sal_distill")
    (pascal.root / "ImageSets" / "Context" / "train.txt").write_text("\n".join(f"id{i}" for i in range(7)))

    with pytest.raises(FileNotFoundError) as info:
        PascalContextMT(pascal.root, split="train", tasks=["saliency"])

    message = str(info.value)
    assert "14 of 14 expected file(s)" in message and "; ... and 9 more." in message
    assert "image for 'id0': JPEGImages/id0.jpg or JPEGImages/id0.png not found" in message
    assert "'id2'" in message and "'id3'" not in message  # id0, id0, id1, id1, id2 shown
    assert "(no folder sal_distill under the root)" in message
