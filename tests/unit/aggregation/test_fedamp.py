"""FedAMP: cloud models against computations by hand, its refusals, and what a client trains and is scored with."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from mfed.aggregation.fedamp import FedAMP, attention, cloud_models
from mfed.aggregation.fold import Pipeline, aggregate
from mfed.aggregation.functional import merge_scopes
from mfed.models.multitask import MultiTaskModel
from mfed.types import PARTS, ClientSpec, ClientUpdate, LocalStep, shared_scopes_of

HAND_U = [0.368250, 0.668752, 2.962998]  # alpha = sigma = 1, w = [0, 1, 3] (fmtl_notes 4.4, by hand)
HAND_SELF = [0.631997, 0.613805, 0.981561]


def test_cloud_models_of_one_scalar_match_the_hand_computation():
    # Prepare
    models = [{"w": torch.tensor([v])} for v in (0.0, 1.0, 3.0)]
    # Execute
    clouds, xi, distances = cloud_models(models, alpha=1.0, sigma=1.0)
    # Assert
    assert [float(c["w"]) for c in clouds] == pytest.approx(HAND_U, abs=1e-6)
    assert xi.diagonal().tolist() == pytest.approx(HAND_SELF, abs=1e-6)
    assert xi[0].tolist() == pytest.approx([1 - math.exp(-1) - math.exp(-9), math.exp(-1), math.exp(-9)], abs=1e-12)
    assert distances.tolist() == [[0.0, 1.0, 9.0], [1.0, 0.0, 4.0], [9.0, 4.0, 0.0]]
    assert xi.sum(dim=1).tolist() == pytest.approx([1.0, 1.0, 1.0], abs=1e-12)


def test_far_models_underflow_to_their_own_without_nan():
    xi = attention(torch.tensor([[0.0, 1e6], [1e6, 0.0]], dtype=torch.float64), alpha=0.5, sigma=1.0)
    assert xi.tolist() == [[1.0, 0.0], [0.0, 1.0]]
    models = [{"w": torch.tensor([0.0])}, {"w": torch.tensor([1e3])}]  # d = 1e6: exp(-1e6) is 0 in float64
    clouds, _, _ = cloud_models(models, alpha=0.5, sigma=1.0)
    assert [float(c["w"]) for c in clouds] == [0.0, 1e3]


def model() -> MultiTaskModel:
    """A scalar encoder weight (with BatchNorm statistics) and a scalar decoder per task."""
    encoder = nn.Sequential(nn.Linear(1, 1, bias=False), nn.BatchNorm1d(1))
    return MultiTaskModel(encoder, {"seg": nn.Linear(1, 1, bias=False), "depth": nn.Linear(1, 1, bias=False)})


def sent(cid: str, tasks: tuple[str, ...], n: int, enc: float, dec: float, stat: float) -> ClientUpdate:
    state = {
        "encoder.0.weight": torch.tensor([[enc]]),
        "encoder.1.weight": torch.tensor([1.0]),
        "encoder.1.bias": torch.tensor([0.0]),
        "encoder.1.running_mean": torch.tensor([stat]),
        "encoder.1.running_var": torch.tensor([stat**2]),
        "encoder.1.num_batches_tracked": torch.tensor(7),
    }
    state.update({f"decoders.{t}.weight": torch.tensor([[dec]]) for t in tasks})
    return ClientUpdate(cid, tasks, n, state)


def test_the_fold_gives_each_client_its_cloud_model_per_group():
    # Prepare: the encoders are the hand case; a and b hold seg (decoders 0 and 2), c depth alone; the
    # BatchNorm statistics are far apart and must not enter the distances
    strategy = FedAMP(alpha=1.0, sigma=1.0, weighting="uniform")
    state = strategy.init_state(model())
    ups = [
        sent("a", ("seg",), 10, enc=0.0, dec=0.0, stat=100.0),
        sent("b", ("seg",), 20, enc=1.0, dec=2.0, stat=-50.0),
        sent("c", ("depth",), 30, enc=3.0, dec=5.0, stat=0.0),
    ]
    # Execute
    pipeline = Pipeline(strategy)
    round_ = pipeline.round(state, 1)
    for u in ups:
        round_.add(u)
    new, metrics = round_.result()
    # Assert: the encoder over all three clients is the hand case; statistics stay each client's own
    for u, expected in zip(ups, HAND_U, strict=True):
        personal = new[f"personal:{u.client_id}"]
        assert float(personal["encoder.0.weight"]) == pytest.approx(expected, abs=1e-6)
        for key in ("encoder.1.running_mean", "encoder.1.running_var", "encoder.1.num_batches_tracked"):
            assert torch.equal(personal[key], u.state[key]), key
    # seg's decoder over a and b only: xi_ab = alpha exp(-||0 - 2||^2 / sigma) / sigma
    xi = math.exp(-4.0)
    assert float(new["personal:a"]["decoders.seg.weight"]) == pytest.approx(xi * 2.0, abs=1e-7)
    assert float(new["personal:b"]["decoders.seg.weight"]) == pytest.approx((1 - xi) * 2.0, abs=1e-6)
    assert float(new["personal:c"]["decoders.depth.weight"]) == 5.0  # alone in its group: its own model
    # the shared scopes: the (uniform) mean of the round's cloud models, for clients not seen yet
    assert float(new["global"]["encoder.0.weight"]) == pytest.approx(sum(HAND_U) / 3, abs=1e-6)
    assert float(new["task:seg"]["decoders.seg.weight"]) == pytest.approx(1.0, abs=1e-6)  # xi 2 + (1 - xi) 2 halved
    assert metrics["xi_self_min"] == pytest.approx(HAND_SELF[1], abs=1e-6)
    assert metrics["xi_peer_max"] == pytest.approx(math.exp(-1), abs=1e-9)
    assert metrics["distance/global"] == pytest.approx((1 + 9 + 4) / 3, abs=1e-9)
    assert metrics["distance/seg"] == pytest.approx(4.0, abs=1e-9)


def test_each_client_starts_from_its_own_model_pulled_toward_its_cloud_model():
    strategy = FedAMP(alpha=0.2, sigma=1.0, lam=3.0)
    assert strategy.steps == (LocalStep(start="own", prox=(("encoder", 15.0), ("decoder", 15.0)), sends=PARTS,
                                        keeps=PARTS),)  # fmt: skip
    assert FedAMP(lam=0.0).steps[0].prox == ()
    # the proximal reference is the client's personal scope: it replaces the shared copies
    state = {"global": {"encoder.w": torch.tensor(0.0)}, "personal:a": {"encoder.w": torch.tensor(2.0)}}
    assert float(merge_scopes(state, shared_scopes_of("a", ("seg",)))["encoder.w"]) == 2.0


def specs(n: int) -> list[ClientSpec]:
    return [ClientSpec(f"c{i}", ("seg",), (i,), (), i) for i in range(n)]


def test_a_step_that_could_make_a_self_weight_negative_is_refused_before_training():
    state = FedAMP().init_state(model())
    with pytest.raises(ValueError, match=r"aggregation.alpha=1 with 3 clients .* alpha <= sigma / \(N - 1\) = 0.5"):
        FedAMP(alpha=1.0, sigma=1.0).configure_round(1, state, specs(3), torch.Generator())
    plan = FedAMP(alpha=0.5, sigma=1.0).configure_round(1, state, specs(3), torch.Generator())
    assert set(plan) == {"c0", "c1", "c2"}
    # and before a run starts, from the federation's clients per round
    from mfed.config import load_config
    from mfed.plan import plan as plan_run

    with pytest.raises(ValueError, match=r"aggregation.alpha=1 with 6 clients"):
        plan_run(load_config(["aggregation=fedamp", "aggregation.alpha=1", "data=shapes", "out_dir=/tmp/unused"]))
    # the fold refuses a negative self-weight too (models that coincide: xi_ii = 1 - 2 alpha / sigma)
    ups = [sent(f"c{i}", ("seg",), 1, enc=0.5, dec=0.0, stat=0.0) for i in range(3)]
    with pytest.raises(ValueError, match="fedamp: client c0's self-weight in global is -1 < 0"):
        aggregate(FedAMP(alpha=1.0, sigma=1.0), state, ups)


def test_settings_are_checked_naming_the_field():
    for kwargs, message in (({"alpha": 0.0}, "aggregation.alpha must be > 0"),
                            ({"sigma": -1.0}, "aggregation.sigma must be > 0"),
                            ({"lam": -1.0}, "aggregation.lam must be >= 0")):  # fmt: skip
        with pytest.raises(ValueError, match=message):
            FedAMP(**kwargs)


def test_a_round_on_the_serial_backend_folds_the_formula_and_scores_each_clients_own_model(tiny_cfg):
    # Prepare: one round of four clients, as the driver runs it
    from mfed.run import build

    driver = build(tiny_cfg("task_mix=seg_depth", "aggregation=fedamp", "federation.rounds=1"))
    driver.state = driver.strategy.init_state(driver.model)
    driver.backend.start(driver.specs, driver.setup)
    updates = list(driver.backend.fit(driver.client_ids, driver.state, 1, driver.plan(1, driver.client_ids)))
    # Execute
    new = aggregate(driver.fold, driver.state, updates)
    # Assert: the encoder's cloud models are FedAMP's formula over the four clients' encoders
    strategy = driver.strategy
    encoders = [{k: v for k, v in u.state.items() if k.startswith("encoder.")} for u in updates]
    clouds, _, _ = cloud_models(encoders, strategy.alpha, strategy.sigma)
    for u, cloud in zip(updates, clouds, strict=True):
        for key, value in cloud.items():
            torch.testing.assert_close(new[f"personal:{u.client_id}"][key], value)
        assert set(u.private) >= set(u.state)  # it keeps the model it sent (w_i)
    # the client is scored with its own trained model w_i, and would train from it toward u_i
    driver.state = new
    assert driver.test_scorers() == {c: [c] for c in driver.client_ids}
    first = updates[0]
    list(driver.backend.evaluate([first.client_id], new, split="val"))
    scored = driver.backend.clients[first.client_id].system.model.state_dict()
    for key, value in first.state.items():
        torch.testing.assert_close(scored[key], value)
