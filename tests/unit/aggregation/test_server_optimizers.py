"""Server optimisers against hand computations over two rounds, with every averaging strategy, and in a run."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from mfed.aggregation import Ditto, FedAvgAll, FedAvgPerTask, FedProx, FedRep, MFed, MFedCA
from mfed.aggregation.fold import Pipeline, aggregate
from mfed.aggregation.server_optimizers import Adagrad, Adam, Momentum, Yogi
from mfed.models.multitask import MultiTaskModel
from mfed.run import build
from mfed.types import ClientUpdate

X0 = 0.5  # every parameter starts here


def model() -> MultiTaskModel:
    encoder, decoder = nn.Linear(1, 1, bias=False), nn.Linear(1, 1, bias=False)
    nn.init.constant_(encoder.weight, X0)
    nn.init.constant_(decoder.weight, X0)
    return MultiTaskModel(encoder, {"t": decoder})


def round_updates(state, values, weights=(1, 3)):
    """Two clients of task t sending the encoder and decoder at ``values`` (what they trained to)."""
    return [
        ClientUpdate(
            f"c{i}", "t", n, {"encoder.weight": torch.full((1, 1), v), "decoders.t.weight": torch.full((1, 1), v)}
        )
        for i, (v, n) in enumerate(zip(values, weights, strict=True))
    ]


ROUNDS = [(1.0, 2.0), (0.0, -1.0)]  # round 1: mean 1.75; round 2: mean -0.75 (weights 1 and 3)


def two_rounds(optimizer) -> list[float]:
    fold, state, out = Pipeline(MFed(), server_optimizer=optimizer), MFed().init_state(model()), []
    for r, values in enumerate(ROUNDS, start=1):
        state = aggregate(fold, state, round_updates(state, values), round_idx=r)
        out.append(float(state["global"]["encoder.weight"]))
        assert float(state["task:t"]["decoders.t.weight"]) == pytest.approx(out[-1], rel=1e-6)  # every scope moves
    return out


def mean(values, weights=(1, 3)):
    return sum(v * w for v, w in zip(values, weights, strict=True)) / sum(weights)


def test_fedavgm_two_rounds_by_hand():
    lr, beta = 0.7, 0.9
    x, v, expected = X0, 0.0, []
    for values in ROUNDS:
        delta = mean(values) - x
        v = beta * v + delta
        x = x + lr * v
        expected.append(x)
    assert two_rounds(Momentum(lr=lr, momentum=beta)) == pytest.approx(expected, rel=1e-6)
    assert expected[1] != pytest.approx(mean(ROUNDS[1]))  # the momentum carried round 1's step on


@pytest.mark.parametrize("rule", ["adam", "yogi", "adagrad"])
def test_adaptive_optimizers_two_rounds_by_hand(rule):
    lr, b1, b2, tau = 0.1, 0.9, 0.99, 1e-3
    x, m, v, expected = X0, 0.0, tau**2, []
    for values in ROUNDS:
        d = mean(values) - x
        m = b1 * m + (1 - b1) * d
        if rule == "adam":
            v = b2 * v + (1 - b2) * d * d
        elif rule == "yogi":
            v = v - (1 - b2) * d * d * math.copysign(1.0, v - d * d)
        else:
            v = v + d * d
        x = x + lr * m / (math.sqrt(v) + tau)
        expected.append(x)
    made = {"adam": Adam(lr, b1, b2, tau), "yogi": Yogi(lr, b1, b2, tau), "adagrad": Adagrad(lr, b1, tau)}[rule]
    assert two_rounds(made) == pytest.approx(expected, rel=1e-6)


AVERAGING = [MFed(), FedAvgPerTask(), FedProx(), FedRep(), Ditto(), FedAvgAll(), MFedCA()]


@pytest.mark.parametrize("strategy", AVERAGING, ids=lambda s: s.name)
def test_a_unit_step_without_momentum_is_plain_averaging_for_every_averaging_strategy(strategy):
    # Prepare: one round of the strategy with and without FedAvgM(lr=1, momentum=0)
    state = strategy.init_state(model())
    updates = round_updates(state, ROUNDS[0])
    # Execute
    plain = aggregate(strategy, state, updates, round_idx=1)
    stepped = aggregate(Pipeline(strategy, server_optimizer=Momentum(lr=1.0, momentum=0.0)), state, updates, 1)
    # Assert: the same tensors, bit for bit; the optimiser kept its buffers apart
    for scope, tensors in plain.items():
        for key, value in tensors.items():
            torch.testing.assert_close(stepped[scope][key], value, rtol=0, atol=0)
    assert set(stepped["server"]) and all(k.startswith("server_optimizer/v/") for k in stepped["server"])


@pytest.mark.parametrize("strategy", AVERAGING, ids=lambda s: s.name)
def test_a_server_optimizer_moves_every_averaging_strategys_shared_scopes(strategy):
    state = strategy.init_state(model())
    updates = round_updates(state, ROUNDS[0])
    plain = aggregate(strategy, state, updates, round_idx=1)
    adam = aggregate(Pipeline(strategy, server_optimizer=Adam(lr=0.1)), state, updates, 1)
    moved = [s for s in plain if not s.startswith(("client:", "server")) and not torch.equal(
        plain[s][next(iter(plain[s]))], adam[s][next(iter(plain[s]))])]  # fmt: skip
    assert moved  # Adam's step (0.1 per coordinate at most) is not the mean's (1.25)


def test_a_scope_that_did_not_fold_keeps_its_value_and_its_optimizer_state():
    fold = Pipeline(FedAvgPerTask(), server_optimizer=Momentum())
    two = MultiTaskModel(nn.Linear(1, 1), {"t": nn.Linear(1, 1), "u": nn.Linear(1, 1)})
    state = FedAvgPerTask().init_state(two)
    new = aggregate(fold, state, [ClientUpdate("c", "t", 1, {k: v + 1 for k, v in state["task:t"].items()})], 1)
    assert new["task:u"] is state["task:u"]
    assert not any("task:u" in k for k in new["server"])


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Momentum(momentum=1.0), r"server_optimizer.momentum must be in \[0, 1\), got 1.0"),
        (lambda: Adam(lr=0), r"server_optimizer.lr must be > 0, got 0"),
        (lambda: Yogi(tau=0), r"server_optimizer.tau must be > 0, got 0"),
    ],
)
def test_bad_server_optimizer_settings_name_the_field(make, message):
    with pytest.raises(ValueError, match=message):
        make()


@pytest.mark.parametrize(("strategy", "optimizer"), [("mfed", "adam"), ("fedavg", "momentum")])
def test_a_run_with_a_server_optimizer_completes_and_differs_from_the_run_without(
    tiny_cfg, tmp_path, strategy, optimizer
):
    args = (f"aggregation={strategy}", "federation.rounds=2")
    with_optimizer = build(tiny_cfg(*args, f"server_optimizer={optimizer}", f"out_dir={tmp_path / 'a'}"))
    with_optimizer.run()
    without = build(tiny_cfg(*args, f"out_dir={tmp_path / 'b'}"))
    without.run()
    assert with_optimizer.status == without.status == "completed"
    scope = "global" if strategy == "mfed" else "task:semseg"
    key = next(iter(without.state[scope]))
    assert not torch.equal(with_optimizer.state[scope][key], without.state[scope][key])
