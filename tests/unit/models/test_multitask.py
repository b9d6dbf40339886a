import pytest
import torch

from mfed.models import ModelFactory, MultiTaskModel
from mfed.models.decoder import ConvDecoder
from mfed.models.encoder import ConvEncoder
from mfed.tasks.depth import Depth
from mfed.tasks.semseg import SemanticSegmentation

FACTORY = ModelFactory(lambda: ConvEncoder(1, (4, 8), norm="batch"), ConvDecoder, seed=3)
TASKS = [SemanticSegmentation(num_classes=5), Depth()]


def test_parameter_names_follow_the_aggregation_contract():
    model = FACTORY(TASKS)
    keys = model.state_dict().keys()
    assert all(k.startswith(("encoder.", "decoders.semseg.", "decoders.depth.")) for k in keys)
    assert any(k.endswith("num_batches_tracked") for k in keys)


def test_same_seed_gives_identical_weights_whatever_the_other_tasks():
    # A client holding one decoder and the driver holding all build the same tensors.
    full, single = FACTORY(TASKS).state_dict(), FACTORY([TASKS[1]]).state_dict()
    for key, value in single.items():
        assert torch.equal(value, full[key]), key
    other_seed = ModelFactory(FACTORY.encoder, FACTORY.decoder, seed=4)([TASKS[1]]).state_dict()
    assert not torch.equal(other_seed["encoder.stages.0.0.0.weight"], single["encoder.stages.0.0.0.weight"])


def test_outputs_come_back_at_input_resolution():
    model = FACTORY(TASKS)
    x = torch.randn(2, 1, 20, 28)
    assert model(x, "semseg").shape == (2, 5, 20, 28)
    assert model(x, "depth").shape == (2, 1, 20, 28)
    with pytest.raises(KeyError, match=r"no decoder for tasks \[.edges.\]"):
        model(x, "edges")


def test_bad_model_arguments():
    with pytest.raises(ValueError, match="at least one decoder"):
        MultiTaskModel(ConvEncoder(), {})
    with pytest.raises(ValueError, match="norm must be one of"):
        ConvEncoder(norm="layer")
    with pytest.raises(ValueError, match="widths must be positive"):
        ConvEncoder(widths=[])
