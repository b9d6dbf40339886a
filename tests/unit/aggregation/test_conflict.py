"""Conflict-averse aggregation: CAGrad's solve, FedHCA2 and mfed_ca against computations by hand."""

import math

import numpy as np
import pytest
import torch

from mfed.aggregation.conflict import cagrad_coefficients, cagrad_weights, combine, gram
from mfed.aggregation.fedhca2 import FedHCA2
from mfed.aggregation.fold import Pipeline, aggregate
from mfed.aggregation.mfed import MFed
from mfed.aggregation.mfed_ca import MFedCA
from mfed.types import ClientUpdate


def two_task_cagrad(g1: np.ndarray, g2: np.ndarray, c: float) -> tuple[float, np.ndarray]:
    """CAGrad for two vectors in closed form: w of g_w = w g1 + (1 - w) g2, and d (rescaled by 1 + c^2).

    F(w) = <g_w, g0> + c ||g0|| ||g_w|| is convex on [0, 1]; its stationary points solve
    (g_w . u) / ||g_w|| = -(u . g0) / (c ||g0||) with u = g1 - g2, squared a quadratic in w:
    q (q - s^2) w^2 + 2 p (q - s^2) w + (p^2 - s^2 r) = 0, p = g2 . u, q = u . u, r = ||g2||^2.
    The minimum is at a root inside [0, 1] or at an end.
    """
    g0, u = (g1 + g2) / 2, g1 - g2
    k = c * np.linalg.norm(g0)
    s = -(u @ g0) / k
    p, q, r = g2 @ u, u @ u, g2 @ g2
    candidates = [0.0, 1.0] + [float(w.real) for w in np.roots([q * (q - s**2), 2 * p * (q - s**2), p**2 - s**2 * r])
                               if abs(w.imag) < 1e-12 and 0 <= w.real <= 1]  # fmt: skip

    def f(w: float) -> float:
        gw = w * g1 + (1 - w) * g2
        return float(gw @ g0 + k * np.linalg.norm(gw))

    w = min(candidates, key=f)
    gw = w * g1 + (1 - w) * g2
    return w, (g0 + k * gw / np.linalg.norm(gw)) / (1 + c**2)


@pytest.mark.parametrize(
    ("g1", "g2"), [([1.0, 0.0], [-0.5, 1.0]), ([3.0, 1.0, -2.0], [-1.0, 0.5, 2.5]), ([1.0, 2.0], [1.1, 2.1])]
)
def test_the_conflict_averse_solve_matches_the_two_task_closed_form(g1, g2):
    g1, g2 = np.array(g1), np.array(g2)
    w, expected = two_task_cagrad(g1, g2, 0.4)
    states = [{"x": torch.tensor(g1)}, {"x": torch.tensor(g2)}]
    weights = cagrad_weights(gram(states), 0.4)
    assert weights == pytest.approx([w, 1 - w], abs=1e-6)
    direction = combine(states, cagrad_coefficients(gram(states), 0.4))["x"].numpy()
    assert direction == pytest.approx(expected, abs=1e-6)
    # the solution does not depend on the updates' scale: a 1e-5 update is solved as exactly
    tiny = [{"x": torch.tensor(g * 1e-5)} for g in (g1, g2)]
    assert combine(tiny, cagrad_coefficients(gram(tiny), 0.4))["x"].numpy() == pytest.approx(expected * 1e-5, rel=1e-5)


def test_the_solve_degenerates_as_cagrad_does():
    states = [
        {"x": torch.tensor([1.0, 2.0]), "y": torch.tensor([[3.0]])},
        {"x": torch.tensor([-1.0, 0.0]), "y": torch.tensor([[1.0]])},
    ]
    # the Gram matrix sums over every key: <s0, s1> = -1 + 0 + 3
    assert gram(states) == pytest.approx(np.array([[14.0, 2.0], [2.0, 2.0]]))
    assert cagrad_coefficients(gram(states), 0.0) == pytest.approx([0.5, 0.5])  # c = 0: the mean
    one = cagrad_coefficients(gram(states[:1]), 0.4)  # one input: g_w = g0, d = (1 + c) g0 / (1 + c^2)
    assert one == pytest.approx([1.4 / 1.16])
    zero = [{"x": torch.zeros(2)}, {"x": torch.zeros(2)}]
    assert cagrad_coefficients(gram(zero), 0.4) == pytest.approx([0.5 / 1.16, 0.5 / 1.16])
    with pytest.raises(ValueError, match="must be >= 0"):
        cagrad_coefficients(gram(states), -1.0)


# A tiny model by hand: the encoder a linear layer and a BatchNorm; decoders of two tasks with a body of
# the same shape and heads of their own (seg 3 outputs, depth 1).
def start_state():
    g = torch.Generator().manual_seed(0)
    encoder = {"encoder.0.weight": torch.randn(2, 2, generator=g), "encoder.1.running_var": torch.ones(2)}
    decoders = {t: {f"decoders.{t}.body.weight": torch.randn(2, 2, generator=g),
                    f"decoders.{t}.body.bias": torch.randn(2, generator=g),
                    f"decoders.{t}.head.weight": torch.randn(out, 2, generator=g)}
                for t, out in (("seg", 3), ("depth", 1))}  # fmt: skip
    return {"global": encoder, **{f"task:{t}": d for t, d in decoders.items()}}


def trained(state, cid, tasks, n, seed):
    """A client's update: what it was sent plus a random change of every tensor."""
    g = torch.Generator().manual_seed(seed)
    sent = {**state["global"], **{k: v for t in tasks for k, v in state[f"task:{t}"].items()}}
    sent = {**sent, **state.get(f"personal:{cid}", {})}
    return ClientUpdate(cid, tasks, n, {k: v + 0.5 * torch.randn(v.shape, generator=g) for k, v in sent.items()})


def test_fedhca2_aggregation_by_hand():
    # Prepare: client a holds seg, client b seg and depth; round 1 from the shared start
    strategy = FedHCA2(ca_c=0.4, alpha_init=0.1, beta_init=0.2, weighting="uniform")
    state = start_state()
    a, b = trained(state, "a", ("seg",), 10, 1), trained(state, "b", ("seg", "depth"), 30, 2)
    # Execute
    new = aggregate(strategy, state, [a, b], round_idx=1)
    # Assert, the encoder: start + own update + alpha d, d CAGrad's direction over the two updates
    w = "encoder.0.weight"
    deltas = [(u.state[w] - state["global"][w]).double().numpy().ravel() for u in (a, b)]
    _, d = two_task_cagrad(*deltas, 0.4)
    for u, delta in zip((a, b), deltas, strict=True):
        expected = state["global"][w].double().numpy().ravel() + delta + 0.1 * d
        assert new[f"personal:{u.client_id}"][w].numpy().ravel() == pytest.approx(expected, abs=1e-5)
        # BatchNorm statistics and heads stay the client's own
        assert torch.equal(new[f"personal:{u.client_id}"]["encoder.1.running_var"], u.state["encoder.1.running_var"])
    assert torch.equal(new["personal:b"]["decoders.depth.head.weight"], b.state["decoders.depth.head.weight"])
    # the decoders: each of the 3 (a/seg, b/seg, b/depth) attends over all 3, tensor by tensor
    owners = [(a, "seg"), (b, "seg"), (b, "depth")]
    for part in ("body.weight", "body.bias"):
        key = "decoders.{}." + part
        deltas = np.stack(
            [(u.state[key.format(t)] - state[f"task:{t}"][key.format(t)]).numpy().ravel() for u, t in owners]
        )
        scores = deltas @ deltas.T / math.sqrt(deltas.shape[1])
        attention = np.exp(scores) / np.exp(scores).sum(axis=1, keepdims=True)
        for i, (u, t) in enumerate(owners):
            start = state[f"task:{t}"][f"decoders.{t}.{part}"].numpy().ravel()
            expected = start + deltas[i] + 0.2 * attention[i] @ deltas
            assert new[f"personal:{u.client_id}"][f"decoders.{t}.{part}"].numpy().ravel() == pytest.approx(
                expected, abs=1e-5
            )
    # the shared scopes are the means of the personalised models (uniform weighting), for clients not yet seen
    mean = (new["personal:a"][w] + new["personal:b"][w]) / 2
    torch.testing.assert_close(new["global"][w], mean)
    torch.testing.assert_close(
        new["task:depth"]["decoders.depth.body.bias"], new["personal:b"]["decoders.depth.body.bias"]
    )

    # Execute: round 2, each client starting from its personalised model
    a2, b2 = trained(new, "a", ("seg",), 10, 3), trained(new, "b", ("seg", "depth"), 30, 4)
    newer = aggregate(strategy, new, [a2, b2], round_idx=2)
    # Assert: one SGD step of alpha on -<d of round 1, the client's round-2 update> (momentum buffer from 0)
    for u in (a2, b2):
        delta = (u.state[w] - new[f"personal:{u.client_id}"][w]).double().numpy().ravel()
        grad = -(d @ delta)
        assert float(newer["server"][f"fedhca2/alpha/{u.client_id}"]) == pytest.approx(
            0.1 - 0.01 * (grad + 1e-4 * 0.1), rel=1e-5
        )
    # beta of b's depth body: -<its round-1 attention output, its round-2 update>, summed over weight and bias
    key = "decoders.depth.body."
    out = sum(
        float(
            (
                new["server"][f"fedhca2/attention/b/depth/body.{p}"].double()
                * (b2.state[key + p] - new["personal:b"][key + p])
            ).sum()
        )
        for p in ("weight", "bias")
    )
    beta = float(newer["server"]["fedhca2/beta/b/depth/body"])
    assert beta == pytest.approx(0.2 - 0.01 * (-out + 1e-4 * 0.2), rel=1e-5)
    assert "fedhca2/beta/b/depth/head" not in newer["server"]  # heads are not aggregated: no weight


def test_fedhca2_averages_a_kinds_updates_and_refuses_defences_and_dp():
    from mfed.aggregation.defences import Defences
    from mfed.aggregation.privacy import DifferentialPrivacy

    state = start_state()
    ups = [trained(state, c, ("seg",), n, s) for c, n, s in (("a", 10, 1), ("b", 30, 2))]
    new = aggregate(FedHCA2(alpha_init=0.0), state, ups, round_idx=1)
    w = "encoder.0.weight"
    mean = (10 * ups[0].state[w] + 30 * ups[1].state[w]) / 40  # alpha 0: start + the kind's mean update
    for c in ("a", "b"):
        torch.testing.assert_close(new[f"personal:{c}"][w], mean)
    with pytest.raises(ValueError, match="defences.clip_norm=1 cannot go with aggregation=fedhca2: .* combines whole"):
        Pipeline(FedHCA2(), Defences(clip_norm=1.0))
    with pytest.raises(ValueError, match="privacy=dp cannot go with aggregation=fedhca2"):
        Pipeline(FedHCA2(), privacy=DifferentialPrivacy(noise_multiplier=1.0, clip_norm=1.0))


def test_mfed_ca_moves_the_encoder_by_the_tasks_conflict_averse_direction():
    # Prepare: two seg clients, one depth client, one holding both
    state = start_state()
    ups = [trained(state, "s0", ("seg",), 10, 1), trained(state, "s1", ("seg",), 30, 2),
           trained(state, "d0", ("depth",), 20, 3), trained(state, "sd", ("seg", "depth"), 40, 4)]  # fmt: skip
    # Execute
    new = aggregate(MFedCA(ca_c=0.4), state, ups)
    plain = aggregate(MFed(), state, ups)
    # Assert: the tasks' example-weighted mean updates, then CAGrad between the two tasks
    w = "encoder.0.weight"
    start = state["global"][w].double()

    def task_mean(members):
        return sum(n * (u.state[w].double() - start) for u, n in members) / sum(n for _, n in members)

    seg = task_mean([(ups[0], 10), (ups[1], 30), (ups[3], 40)]).numpy().ravel()
    depth = task_mean([(ups[2], 20), (ups[3], 40)]).numpy().ravel()
    _, d = two_task_cagrad(seg, depth, 0.4)
    assert new["global"][w].numpy().ravel() == pytest.approx(start.numpy().ravel() + d, abs=1e-5)
    # everything else is M-Fed's: BatchNorm statistics over all clients, decoders per task
    for scope, tensors in plain.items():
        for key, value in tensors.items():
            if key != w:
                torch.testing.assert_close(new[scope][key], value)


def test_opposite_updates_fall_back_to_their_mean_not_a_direction_set_by_rounding():
    # Prepare: two opposite updates whose Gram matrix carries rounding (1e-13 of its entries)
    gram_matrix = np.array([[1.0, -1.0 + 1e-13], [-1.0 + 1e-13, 1.0]])
    # Execute
    coefficients = cagrad_coefficients(gram_matrix, 0.4)
    # Assert: the mean's coefficients (rescaled by 1 + c^2): no step along the rounding's direction
    np.testing.assert_allclose(coefficients, [0.5 / 1.16, 0.5 / 1.16], rtol=1e-12)
    g = {"w": torch.tensor([0.3, -1.7, 2.2], dtype=torch.float64)}
    assert float(combine([g, {"w": -g["w"]}], coefficients)["w"].abs().max()) == 0.0
