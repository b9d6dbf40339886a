import math

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from mfed.config import config_dir
from mfed.systems.dwa import DWA, dwa_weights
from mfed.systems.weighting import load_weighting_state, weighting_state

# Three epochs of two tasks' mean losses; a falls fast then slowly, b slowly then fast.
EPOCHS = [{"a": 2.0, "b": 1.0}, {"a": 1.0, "b": 0.9}, {"a": 0.8, "b": 0.45}, {"a": 0.4, "b": 0.45}]


def by_hand(last: dict[str, float], before: dict[str, float], temperature: float = 2.0) -> list[float]:
    """w_t = K exp(r_t / T) / sum_i exp(r_i / T), r_t = L_t(k-1) / L_t(k-2), written out."""
    e = {t: math.exp(last[t] / before[t] / temperature) for t in last}
    return [len(e) * e[t] / sum(e.values()) for t in last]


def test_dwa_weights_over_four_epochs_match_the_hand_formula():
    # Prepare
    weighting = DWA(["a", "b"])
    seen = [weighting.weights()]
    # Execute: the weights each epoch trains with, after each epoch's losses
    for losses in EPOCHS:
        weighting.on_train_epoch_end(losses)
        seen.append(weighting.weights())
    # Assert: 1 for epochs 1 and 2, then from the two epochs before
    assert seen[0] == seen[1] == {"a": 1.0, "b": 1.0}
    # epoch 3: r = (1/2, 0.9): b fell more slowly, so weighs more
    assert list(seen[2].values()) == pytest.approx(by_hand(EPOCHS[1], EPOCHS[0]), rel=1e-6)
    assert seen[2]["b"] > 1.0 > seen[2]["a"]
    assert list(seen[3].values()) == pytest.approx(by_hand(EPOCHS[2], EPOCHS[1]), rel=1e-6)  # r = (0.8, 0.5)
    assert list(seen[4].values()) == pytest.approx(by_hand(EPOCHS[3], EPOCHS[2]), rel=1e-6)  # r = (0.5, 1)
    assert sum(seen[4].values()) == pytest.approx(2.0)
    assert int(weighting.epochs) == 4
    torch.testing.assert_close(weighting.loss_history, torch.tensor([[0.8, 0.45], [0.4, 0.45]]))


def test_dwa_combines_with_the_current_weights_and_no_gradient_through_them():
    weighting = DWA(["a", "b"], temperature=1.0)
    for losses in EPOCHS[:2]:
        weighting.on_train_epoch_end(losses)
    x = torch.tensor(3.0, requires_grad=True)
    value = weighting.combine({"a": 2 * x, "b": x * x})
    value.backward()
    w_a, w_b = by_hand(EPOCHS[1], EPOCHS[0], temperature=1.0)
    assert float(value.detach()) == pytest.approx(w_a * 6.0 + w_b * 9.0, rel=1e-6)
    assert x.grad is not None and float(x.grad) == pytest.approx(w_a * 2 + w_b * 6.0, rel=1e-6)
    assert list(weighting.parameters()) == []


def test_temperature_flattens_the_weights():
    last, before = torch.tensor([0.5, 0.9]), torch.tensor([1.0, 1.0])
    sharp, flat = dwa_weights(last, before, 0.1), dwa_weights(last, before, 100.0)
    assert float(sharp[1] - sharp[0]) > float(flat[1] - flat[0]) > 0
    assert flat.tolist() == pytest.approx([1.0, 1.0], abs=1e-2)


def test_a_zero_earlier_loss_counts_as_an_unchanged_task():
    weights = dwa_weights(torch.tensor([0.0, 0.5, 2.0]), torch.tensor([0.0, 1.0, 0.0]), 2.0)
    assert torch.isfinite(weights).all()
    expected = by_hand({"a": 1.0, "b": 0.5, "c": 1.0}, {"a": 1.0, "b": 1.0, "c": 1.0})
    assert weights.tolist() == pytest.approx(expected, rel=1e-6)


def test_history_survives_the_private_state_into_a_fresh_object():
    # Prepare: the straight history over three epochs, one client object
    straight = DWA(["a", "b"])
    for losses in EPOCHS[:3]:
        straight.on_train_epoch_end(losses)
    # Execute: a stateless client, one epoch per round (a fresh object each round, the state through the server)
    state: dict[str, torch.Tensor] = {}
    for losses in EPOCHS[:3]:
        client = DWA(["a", "b"])
        load_weighting_state(client, state)
        client.on_train_epoch_end(losses)
        state = {**weighting_state(client), "encoder.w": torch.zeros(2)}
    fresh = DWA(["a", "b"])
    load_weighting_state(fresh, state)
    # Assert: buffers travel (no parameters), and the fresh object goes on as the straight one
    assert sorted(k for k in state if k.startswith("weighting.")) == [
        "weighting.epochs", "weighting.loss_history", "weighting.weight"
    ]  # fmt: skip
    assert state["weighting.epochs"].dtype == torch.int64 and int(state["weighting.epochs"]) == 3
    assert fresh.weights() == pytest.approx(straight.weights())
    assert fresh.weights() == pytest.approx(dict(zip("ab", by_hand(EPOCHS[2], EPOCHS[1]), strict=True)))
    fresh.on_train_epoch_end(EPOCHS[3])
    straight.on_train_epoch_end(EPOCHS[3])
    assert fresh.weights() == pytest.approx(straight.weights())


def test_a_new_fit_does_not_reset_the_history():
    weighting = DWA(["a", "b"])
    for losses in EPOCHS[:2]:
        weighting.on_fit_start()
        weighting.on_train_epoch_end(losses)
        weighting.on_fit_end()
    weighting.on_fit_start()
    assert list(weighting.weights().values()) == pytest.approx(by_hand(EPOCHS[1], EPOCHS[0]), rel=1e-6)


def test_dwa_errors():
    with pytest.raises(ValueError, match="weighting.temperature must be a finite number > 0, got 0"):
        DWA(["a"], temperature=0)
    with pytest.raises(ValueError, match="weighting.temperature"):
        DWA(["a"], temperature=float("inf"))
    with pytest.raises(ValueError, match="weighting.temperature"):
        DWA(["a"], temperature=True)
    with pytest.raises(ValueError, match=r"missing \['b'\], extra \['c'\]"):
        DWA(["a", "b"]).on_train_epoch_end({"a": 1.0, "c": 2.0})
    with pytest.raises(ValueError, match="weighting.tasks must name at least one task"):
        DWA([])


def test_dwa_config_instantiates_as_a_partial():
    factory = instantiate(OmegaConf.load(config_dir() / "weighting" / "dwa.yaml"))
    weighting = factory(tasks=["semseg", "depth"])
    assert type(weighting) is DWA
    assert weighting.tasks == ("semseg", "depth") and weighting.temperature == 2.0
