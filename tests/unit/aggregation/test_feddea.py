"""FedDEA (a reconstruction): the decoupled update by hand, the fold against a direct formula, the host at rho = 1."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from mfed.aggregation import MFed
from mfed.aggregation.defences import Defences
from mfed.aggregation.feddea import FedDEA, decouple, top_mask
from mfed.aggregation.fold import Pipeline, aggregate
from mfed.aggregation.privacy import DifferentialPrivacy
from mfed.aggregation.server_optimizers import Momentum
from mfed.models.multitask import MultiTaskModel
from mfed.secure.rounds import SecureAggregation
from mfed.types import PARTS, ClientUpdate, LocalStep

DELTA = [0.1, -3.0, 0.5, 2.0, 0.0]  # rho = 0.4 keeps ceil(2) = 2 entries: -3 and 2


@pytest.mark.parametrize(
    ("rule", "factor"),
    [
        ("l2", math.sqrt(0.01 + 9 + 0.25 + 4) / math.sqrt(13)),
        ("l1", (0.1 + 3 + 0.5 + 2) / 5),
        ("rho", 1 / 0.4),
        ("none", 1.0),
    ],
)
def test_the_top_entries_are_kept_and_rescaled_by_hand(rule, factor):
    out = decouple({"w": torch.tensor(DELTA, dtype=torch.float64)}, rho=0.4, rescale=rule)
    assert out["w"].tolist() == pytest.approx([0.0, -3.0 * factor, 0.0, 2.0 * factor, 0.0], abs=1e-12)


def test_the_mask_keeps_ceil_rho_n_entries_ties_by_position():
    assert top_mask(torch.tensor([1.0, -1.0, 1.0, 0.5]), 0.5).tolist() == [True, True, False, False]
    assert top_mask(torch.tensor([3.0, 1.0, 2.0]), 0.01).tolist() == [True, False, False]  # at least one
    assert top_mask(torch.tensor([3.0, 1.0, 2.0]), 1.0).all()


def test_a_part_is_one_unit_unless_per_tensor():
    delta = {"a": torch.tensor([4.0, 3.0], dtype=torch.float64), "b": torch.tensor([0.2, 0.1], dtype=torch.float64)}
    part = decouple(delta, rho=0.5, rescale="none", per="part")  # the two largest of all four: both of a
    assert part["a"].tolist() == [4.0, 3.0] and part["b"].tolist() == [0.0, 0.0]
    each = decouple(delta, rho=0.5, rescale="l2", per="tensor")  # the largest of each, its tensor's norm kept
    assert each["a"].tolist() == pytest.approx([5.0, 0.0]) and each["b"].tolist() == pytest.approx([math.sqrt(0.05), 0])
    assert decouple({"z": torch.zeros(3, dtype=torch.float64)}, 0.5)["z"].tolist() == [0.0, 0.0, 0.0]


def tiny_model() -> MultiTaskModel:
    torch.manual_seed(0)
    encoder = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    return MultiTaskModel(encoder, {"seg": nn.Linear(4, 2), "depth": nn.Linear(4, 1)})


def trained(start: dict, cid: str, tasks: tuple[str, ...], n: int, seed: int) -> ClientUpdate:
    """What a client sends: its start plus noise on the floating tensors (statistics too)."""
    g = torch.Generator().manual_seed(seed)
    prefixes = ("encoder.", *(f"decoders.{t}." for t in tasks))
    state = {
        k: (v + torch.randn(v.shape, generator=g) if v.is_floating_point() else v + 1)
        for scope in start.values()
        for k, v in scope.items()
        if k.startswith(prefixes)
    }
    return ClientUpdate(cid, tasks, n, state)


def reference(delta: np.ndarray, rho: float) -> np.ndarray:
    """FedDEA's l2 rule written again with numpy: the ceil(rho n) largest |entries|, the norm kept."""
    keep = np.argsort(-np.abs(delta), kind="stable")[: math.ceil(rho * delta.size)]
    kept = np.zeros_like(delta)
    kept[keep] = delta[keep]
    return kept * np.linalg.norm(delta) / np.linalg.norm(kept)


def test_the_fold_is_sent_plus_the_weighted_mean_of_the_decoupled_updates():
    # Prepare
    strategy = FedDEA(rho=0.3)
    state = strategy.init_state(tiny_model())
    ups = [trained(state, "a", ("seg",), 10, 1), trained(state, "b", ("seg", "depth"), 30, 2),
           trained(state, "c", ("depth",), 20, 3)]  # fmt: skip
    # Execute
    new = aggregate(strategy, state, ups)
    # Assert: per client and part, the parameters' update decoupled as one vector; weights n_k
    params = {"global": ["encoder.0.weight", "encoder.0.bias", "encoder.1.weight", "encoder.1.bias"],
              "task:seg": ["decoders.seg.weight", "decoders.seg.bias"],
              "task:depth": ["decoders.depth.weight", "decoders.depth.bias"]}  # fmt: skip
    for scope, keys in params.items():
        holders = [u for u in ups if any(k in u.state for k in keys)]
        sent = np.concatenate([state[scope][k].double().numpy().ravel() for k in keys])
        total = sum(u.num_examples for u in holders)
        mean = sum(
            u.num_examples * reference(np.concatenate([u.state[k].double().numpy().ravel() for k in keys]) - sent, 0.3)
            for u in holders
        )
        got = np.concatenate([new[scope][k].double().numpy().ravel() for k in keys])
        np.testing.assert_allclose(got, sent + mean / total, atol=1e-6)
    # BatchNorm statistics and counters: the plain weighted mean
    var = sum(u.num_examples * u.state["encoder.1.running_var"] for u in ups) / 60
    torch.testing.assert_close(new["global"]["encoder.1.running_var"], var)
    assert int(new["global"]["encoder.1.num_batches_tracked"]) == 1


def test_rho_one_is_the_host_and_an_undecoupled_part_folds_as_the_host():
    state = FedDEA().init_state(tiny_model())
    ups = [trained(state, c, t, n, s) for c, t, n, s in (("a", ("seg",), 10, 1), ("b", ("seg", "depth"), 30, 2))]
    host = aggregate(MFed(mu=0.0), state, ups)
    for scope, tensors in aggregate(FedDEA(rho=1.0), state, ups).items():
        for key, value in tensors.items():
            torch.testing.assert_close(value, host[scope][key], rtol=0, atol=1e-6)
    encoder_only = aggregate(FedDEA(rho=0.2, parts=["encoder"]), state, ups)
    for scope in ("task:seg", "task:depth"):
        for key, value in encoder_only[scope].items():
            torch.testing.assert_close(value, host[scope][key], rtol=0, atol=1e-6)
    assert not torch.allclose(encoder_only["global"]["encoder.0.weight"], host["global"]["encoder.0.weight"])


def test_it_plugs_into_fedavg_and_fedprox_local_steps():
    assert FedDEA().steps == (LocalStep(sends=PARTS),)
    assert FedDEA(mu=0.01).steps == (LocalStep(prox=(("encoder", 0.01), ("decoder", 0.01)), sends=PARTS),)


def test_clipping_after_the_route_bounds_the_decoupled_update():
    # Prepare
    strategy = FedDEA(rho=0.5)
    state = strategy.init_state(tiny_model())
    ups = [trained(state, "a", ("seg",), 10, 1)]
    decoupled = aggregate(strategy, state, ups)  # one client: the state is sent + its decoupled update
    # Execute
    clipped = aggregate(Pipeline(strategy, Defences(clip_norm=0.1)), state, ups)
    # Assert: the encoder's decoupled update, clipped to 0.1 as one vector
    keys = list(state["global"])
    floating = [k for k in keys if state["global"][k].is_floating_point()]
    delta = torch.cat([(decoupled["global"][k].double() - state["global"][k].double()).ravel() for k in floating])
    moved = torch.cat([(clipped["global"][k].double() - state["global"][k].double()).ravel() for k in floating])
    torch.testing.assert_close(moved, delta * 0.1 / float(delta.norm()), rtol=1e-5, atol=1e-6)


def test_stages_that_take_a_mean_are_allowed_and_secure_aggregation_is_refused():
    Pipeline(FedDEA(), Defences(robust="median"))
    Pipeline(FedDEA(), privacy=DifferentialPrivacy(noise_multiplier=1.0, clip_norm=1.0))
    Pipeline(FedDEA(), server_optimizer=Momentum())
    with pytest.raises(ValueError, match="aggregation=feddea cannot go with secure_aggregation=secagg_plus") as err:
        Pipeline(FedDEA(), secure=SecureAggregation())
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"rho": 0.0}, r"aggregation.rho must lie in \(0, 1\], got 0.0"),
        ({"rho": 1.5}, r"aggregation.rho must lie in \(0, 1\], got 1.5"),
        ({"rescale": "l3"}, "aggregation.rescale must be one of"),
        ({"per": "layer"}, "aggregation.per must be one of"),
        ({"parts": ["head"]}, "aggregation.parts must list distinct parts"),
        ({"mu": -1.0}, "aggregation.mu must be >= 0"),
    ],
)
def test_settings_are_checked_naming_the_field(kwargs, message):
    with pytest.raises(ValueError, match=message):
        FedDEA(**kwargs)
