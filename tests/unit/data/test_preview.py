from PIL import Image

from mfed.cli import main
from mfed.data.items import ShapeItems
from mfed.data.preview import preview_grid
from mfed.data.scene_dataset import SceneDataset


def test_preview_grid_has_a_row_per_sample_and_a_column_per_dense_target(tmp_path):
    pool = SceneDataset(ShapeItems(), length=5, size=32)
    path = preview_grid(pool, [0, 1, 2], ["semseg", "depth", "normals", "classification"], tmp_path / "p.png")
    width, height = Image.open(path).size
    # 4 columns (image + 3 dense targets) of 1.8 in, 3 rows of 1.9 in, at 100 dpi
    assert (width, height) == (720, 570)


def test_cli_data_preview_writes_the_file(tmp_path, capsys):
    out = tmp_path / "preview.png"
    assert main(["data", "preview", "data=shapes", "--n", "2", "--out", str(out)]) == 0
    assert out.is_file() and "wrote" in capsys.readouterr().out
