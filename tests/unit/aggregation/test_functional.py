import pytest
import torch

from mfed.aggregation.functional import select, update_weight, weighted_average
from mfed.types import ClientUpdate


def test_weighted_average_matches_hand_computed_mean():
    # Prepare
    a = {"w": torch.tensor([1.0, 2.0]), "b": torch.tensor(0.0)}
    b = {"w": torch.tensor([3.0, 6.0]), "b": torch.tensor(4.0)}
    # Execute
    out = weighted_average([a, b], [1, 3])
    # Assert: (1*1 + 3*3)/4 = 2.5, (1*2 + 3*6)/4 = 5, (0 + 12)/4 = 3
    torch.testing.assert_close(out["w"], torch.tensor([2.5, 5.0]))
    torch.testing.assert_close(out["b"], torch.tensor(3.0))


def test_integer_buffers_get_the_rounded_weighted_mean_in_their_dtype():
    states = [{"num_batches_tracked": torch.tensor(10)}, {"num_batches_tracked": torch.tensor(15)}]
    out = weighted_average(states, [1, 1])
    assert out["num_batches_tracked"].dtype == torch.int64
    assert int(out["num_batches_tracked"]) == 12  # 12.5 rounds half to even
    out = weighted_average(states, [1, 3])
    assert int(out["num_batches_tracked"]) == 14  # 13.75


def test_half_precision_is_averaged_in_float64_and_cast_back():
    states = [{"w": torch.tensor([1.0], dtype=torch.float16)}, {"w": torch.tensor([2.0], dtype=torch.float16)}]
    out = weighted_average(states, [1, 1])
    assert out["w"].dtype == torch.float16 and float(out["w"]) == 1.5


def test_mismatched_keys_name_the_client():
    with pytest.raises(ValueError, match=r"client b has different keys.*missing \['x'\]"):
        weighted_average([{"x": torch.ones(1)}, {"y": torch.ones(1)}], [1, 1], names=["client a", "client b"])


def test_mismatched_shapes_say_configs_differ():
    with pytest.raises(ValueError, match=r"x has shape \(2,\) in b but \(1,\) in a: clients' model configs differ"):
        weighted_average([{"x": torch.ones(1)}, {"x": torch.ones(2)}], [1, 1], names=["a", "b"])


@pytest.mark.parametrize("weights", [[0, 0], [-1, 2], []])
def test_bad_weights_are_rejected(weights):
    with pytest.raises(ValueError):
        weighted_average([{"x": torch.ones(1)}] * len(weights), weights)


def test_select_by_prefix():
    state = {"encoder.a": 1, "decoders.seg.b": 2, "decoders.depth.c": 3}
    assert select(state, ["encoder.", "decoders.seg."]) == {"encoder.a": 1, "decoders.seg.b": 2}


def test_update_weight_examples_uniform_and_unknown():
    updates = [ClientUpdate("a", "t", 3, {}), ClientUpdate("b", "t", 1, {})]
    assert [update_weight(u, "examples") for u in updates] == [3.0, 1.0]
    assert [update_weight(u, "uniform") for u in updates] == [1.0, 1.0]
    with pytest.raises(ValueError, match="weighting must be one of"):
        update_weight(updates[0], "median")
