"""ResNet encoders: torchvision's architecture and names (its weights load), fused multi-scale features."""

import functools

import pytest
import torch

from mfed.config import load_config
from mfed.models import ModelFactory
from mfed.models.decoder import ConvDecoder
from mfed.models.resnet import ResNetEncoder
from mfed.run import build
from mfed.tasks.depth import Depth
from mfed.tasks.semseg import SemanticSegmentation

# torchvision's published parameter counts (its model docs) minus the 1000-class fc layer
TORCHVISION_PARAMS = {18: 11_689_512 - (512 * 1000 + 1000), 50: 25_557_032 - (2048 * 1000 + 1000)}


@pytest.mark.parametrize("depth", [18, 50])
def test_the_architecture_is_torchvisions_and_fuses_every_stage(depth):
    encoder = ResNetEncoder(depth, in_channels=3)
    assert sum(p.numel() for p in encoder.parameters()) == TORCHVISION_PARAMS[depth]
    names = encoder.state_dict().keys()
    assert {"conv1.weight", "bn1.running_mean", "layer1.0.conv1.weight", "layer4.1.bn2.weight"} <= set(names)
    features = encoder(torch.zeros(2, 3, 32, 32))
    expected = 64 + 128 + 256 + 512 if depth == 18 else 256 + 512 + 1024 + 2048
    assert features.shape == (2, expected, 8, 8) and encoder.out_channels == expected


def test_a_multitask_model_on_resnet_keeps_the_key_contract():
    factory = ModelFactory(functools.partial(ResNetEncoder, 18, 1, (2, 3)), functools.partial(ConvDecoder, hidden=8), 0)
    model = factory([SemanticSegmentation(num_classes=5), Depth()])
    keys = model.state_dict().keys()
    assert all(k.startswith(("encoder.", "decoders.semseg.", "decoders.depth.")) for k in keys)
    assert "encoder.layer3.1.conv2.weight" in keys and "encoder.layer4.0.conv1.weight" in keys
    assert model(torch.zeros(1, 1, 32, 32), "semseg").shape == (1, 5, 32, 32)
    assert model.encoder.out_channels == 128 + 256 and model.encoder.reduction == 8


def test_pretrained_weights_load_from_a_torchvision_format_file(tmp_path):
    # Prepare: a "downloaded" file: another encoder's weights, torchvision's names, with its fc classifier
    source = ResNetEncoder(18, in_channels=3)
    saved = {**source.state_dict(), "fc.weight": torch.zeros(1000, 512), "fc.bias": torch.zeros(1000)}
    torch.save(saved, tmp_path / "resnet18.pth")
    # Execute
    loaded = ResNetEncoder(18, in_channels=3, weights=str(tmp_path / "resnet18.pth"))
    grey = ResNetEncoder(18, in_channels=1, weights=str(tmp_path / "resnet18.pth"))
    # Assert: every tensor equal; a grey-scale first convolution sums the RGB filters
    for key, value in source.state_dict().items():
        if key != "conv1.weight":
            assert torch.equal(loaded.state_dict()[key], value), key
    assert torch.equal(loaded.conv1.weight, source.conv1.weight)
    assert torch.allclose(grey.conv1.weight[:, 0], source.conv1.weight.sum(dim=1))


def test_weights_that_are_missing_or_do_not_fit_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"model.encoder.weights=.*nope.pth: no such file \(nothing is down"):
        ResNetEncoder(18, weights=str(tmp_path / "nope.pth"))
    torch.save(ResNetEncoder(50).state_dict(), tmp_path / "r50.pth")
    with pytest.raises(ValueError, match=r"does not fit a ResNet-18: missing \[.*\(is it another depth\?\)"):
        ResNetEncoder(18, weights=str(tmp_path / "r50.pth"))
    (tmp_path / "junk.pth").write_text("not weights")
    with pytest.raises(ValueError, match="junk.pth: not a torch weights file"):
        ResNetEncoder(18, weights=str(tmp_path / "junk.pth"))
    with pytest.raises(ValueError, match="pretrained ResNet weights need norm=batch"):
        ResNetEncoder(18, weights=str(tmp_path / "r50.pth"), norm="group")
    with pytest.raises(ValueError, match=r"model.encoder.stages must be a non-empty subset"):
        ResNetEncoder(18, stages=(5,))


def test_model_resnet18_builds_through_the_config(tiny_cfg):
    from tests.conftest import TINY

    base = [o for o in TINY if not o.startswith("model.")]
    cfg = tiny_cfg("model=resnet18", "model.encoder.stages=[3,4]", "model.decoder.hidden=8", "task_mix=seg_depth",
                   base=base)  # fmt: skip
    driver = build(cfg)
    assert driver.model.encoder.out_channels == 256 + 512
    assert load_config(["model=resnet50"]).model.encoder.depth == 50
