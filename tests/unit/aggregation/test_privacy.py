"""Client-level DP: the noise, the clipping, the accounting, resume, and the refused combinations."""

import math

import dp_accounting as dpa
import pytest
import torch
from dp_accounting.rdp import rdp_privacy_accountant as rdp

from mfed.aggregation import FedAvgAll, Local, MFed
from mfed.aggregation.accounting import calibrate, epsilon
from mfed.aggregation.defences import Defences
from mfed.aggregation.fold import Pipeline, aggregate
from mfed.aggregation.privacy import DifferentialPrivacy
from mfed.aggregation.robust import update_norm
from mfed.run import build, run, start
from mfed.types import ClientSpec, ClientUpdate

SPECS = [ClientSpec(f"t-{i}", "t", (i,), (), i) for i in range(8)]


def private(strategy=None, clients=SPECS, fraction=0.5, rounds=10, **options):
    privacy, defences = DifferentialPrivacy(**options), None
    if isinstance(strategy, tuple):
        strategy, defences = strategy
    fold = Pipeline(strategy or MFed(), defences, privacy)
    privacy.bind(fold.strategy.members(clients), len(clients), fraction, rounds)
    return fold


def update(cid, encoder):
    return ClientUpdate(cid, "t", 5, {"encoder.w": encoder, "decoders.t.w": torch.ones(1)})


STATE = {"global": {"encoder.w": torch.zeros(200_000)}, "task:t": {"decoders.t.w": torch.zeros(1)}}


def test_the_noise_has_the_standard_deviation_of_its_formula():
    # Prepare: 4 of 8 clients sampled, z = 1.5, C = 2: std z * C / 4 = 0.75 per coordinate of the mean update
    strategy = private(noise_multiplier=1.5, clip_norm=2.0)
    updates = [update(f"t-{i}", torch.zeros(200_000)) for i in range(4)]  # no movement: only noise remains
    # Execute
    new = aggregate(strategy, STATE, updates, round_idx=1, rng=torch.Generator().manual_seed(0))
    # Assert: measured over 200,000 draws (the std's standard error is about 0.16 %)
    noise = new["global"]["encoder.w"].double()
    assert float(noise.std()) == pytest.approx(0.75, rel=0.01)
    assert abs(float(noise.mean())) < 0.01
    assert torch.equal(new["task:t"]["decoders.t.w"], torch.ones(1))  # the decoder is not protected: its mean


def test_noised_batchnorm_variances_are_clamped_at_zero():
    # Prepare: a variance of 0 plus noise of std 1 goes negative in about half its coordinates
    state = {"global": {"encoder.bn.running_var": torch.zeros(1000)}}
    state["task:t"] = {"decoders.t.w": torch.zeros(1)}
    strategy = private(noise_multiplier=4.0, clip_norm=1.0)
    sent = {"encoder.bn.running_var": torch.zeros(1000), "decoders.t.w": torch.ones(1)}
    updates = [ClientUpdate(f"t-{i}", "t", 5, sent) for i in range(4)]
    # Execute
    new = aggregate(strategy, state, updates, round_idx=1, rng=torch.Generator().manual_seed(0))
    # Assert
    var = new["global"]["encoder.bn.running_var"]
    assert bool((var >= 0).all()) and 300 < int((var == 0).sum()) < 700


def test_each_update_is_clipped_and_the_denominator_is_fixed():
    # Prepare: no noise; one client moves the encoder by 100 along one axis, another by 0.3
    strategy = private(noise_multiplier=0.0, clip_norm=1.0)
    big, small = torch.zeros(200_000), torch.zeros(200_000)
    big[0], small[1] = 100.0, 0.3
    # Execute: 2 clients arrived, the denominator stays the expected 4
    new = aggregate(strategy, STATE, [update("t-0", big), update("t-1", small)], round_idx=1)
    # Assert: (clip(100) + 0.3) / 4, each within the bound
    mean = new["global"]["encoder.w"]
    assert float(mean[0]) == pytest.approx(1.0 / 4) and float(mean[1]) == pytest.approx(0.3 / 4)
    assert update_norm({"w": mean * 4}, {"w": torch.zeros(200_000)}) <= 1.0 + 0.3 + 1e-6


def test_epsilon_is_the_accounting_librarys_own_answer():
    # The library's RDP accountant on the same event: 4 of 8 clients without replacement, replace-one, 10 rounds
    gaussian = dpa.GaussianDpEvent(1.3 / 2)  # sensitivity of a sum of updates clipped to C under replace-one: 2C
    accountant = rdp.RdpAccountant(neighboring_relation=dpa.NeighboringRelation.REPLACE_ONE)
    accountant.compose(dpa.SelfComposedDpEvent(dpa.SampledWithoutReplacementDpEvent(8, 4, gaussian), 10))
    strategy = private(noise_multiplier=1.3)
    assert strategy.privacy.epsilon(10) == pytest.approx(accountant.get_epsilon(1e-5), rel=1e-12)
    assert 0 < strategy.privacy.epsilon(1) < strategy.privacy.epsilon(5) < strategy.privacy.epsilon(10)
    # every client in every round: the Gaussian mechanism alone, composed
    full = rdp.RdpAccountant(neighboring_relation=dpa.NeighboringRelation.REPLACE_ONE)
    full.compose(dpa.SelfComposedDpEvent(gaussian, 10))
    assert epsilon(1.3, 8, 8, 10, 1e-5) == pytest.approx(full.get_epsilon(1e-5), rel=1e-12)


def test_a_null_noise_multiplier_is_calibrated_to_the_budget():
    z = calibrate(4.0, 8, 4, 10, 1e-5)
    assert epsilon(z, 8, 4, 10, 1e-5) <= 4.0 < epsilon(z * 0.99, 8, 4, 10, 1e-5)
    assert private(noise_multiplier=None, target_epsilon=4.0).privacy.noise_multiplier == z


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: private(Local()), "privacy=dp cannot go with aggregation=local: .* averages no update"),
        (lambda: private((MFed(), Defences(robust="median"))), "privacy=dp cannot go with defences.robust=median: "),
        (lambda: private(FedAvgAll(), parts=["encoder", "decoder"]), "privacy=dp cannot go with aggregation=fedavg_al"),
        (lambda: private(noise_multiplier=0.8, target_epsilon=3.0), r"target_epsilon=3.0 runs out in round \d+ of 10"),
        (lambda: private(noise_multiplier=None), "privacy.noise_multiplier=null needs privacy.target_epsilon"),
        (lambda: private(parts=["head"]), r"privacy.parts must hold encoder and/or decoder, got \['head'\]"),
        (lambda: private(adaptive=True, noise_multiplier=1.0), r"noise_multiplier > 1 / \(2 \* count_noise\) = 2.5"),
    ],
)  # fmt: skip
def test_combinations_that_break_the_guarantee_are_refused(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_the_budget_runs_out_in_the_round_named():
    strategy = private(noise_multiplier=0.8)
    with pytest.raises(ValueError, match="runs out in round") as err:
        private(noise_multiplier=0.8, target_epsilon=strategy.privacy.epsilon(6) * 0.999)
    assert "round 6 of 10" in str(err.value)


DP = ("privacy=dp", "privacy.noise_multiplier=0.5", "privacy.clip_norm=0.5")


def test_a_dp_run_logs_epsilon_every_round_and_releases_no_per_client_figures(tiny_cfg):
    cfg = tiny_cfg(*DP, "federation.rounds=3")
    driver = build(cfg)
    history = start(driver, cfg).run()
    eps = [row["privacy/epsilon"] for row in history]
    assert eps == [driver.fold.privacy.epsilon(r) for r in (1, 2, 3)] and eps[0] < eps[1] < eps[2]
    assert all(math.isfinite(e) for e in eps)
    assert not any(k.startswith(("client/", "diag/")) for row in history for k in row)
    assert "test/semseg/mIoU" in history[-1]


def test_a_dp_run_resumes_bit_exact_with_the_same_noise(tiny_cfg, tmp_path):
    # Prepare: adaptive clipping and client-side clipping too, so the server scope and the plan are exercised
    options = (*DP, "privacy.adaptive=true", "privacy.count_noise=1.5", "privacy.clipping=client")
    straight = tiny_cfg(*options, f"out_dir={tmp_path / 'straight'}")
    whole = build(straight)
    start(whole, straight).run()
    # Execute
    run(tiny_cfg(*options, "federation.rounds=1", f"out_dir={tmp_path / 'cut'}"))
    again = tiny_cfg(*options, f"resume={tmp_path / 'cut'}", "out_dir=null")
    resumed = build(again)
    start(resumed, again).run()
    # Assert: the same noised state, and the adapted bound kept in the server scope
    for scope, tensors in whole.state.items():
        for key, value in tensors.items():
            assert torch.equal(resumed.state[scope][key], value), (scope, key)
    assert float(whole.state["server"]["privacy/clip_norm"]) != 0.5


def test_client_side_clipping_bounds_what_each_client_sends(tiny_cfg):
    driver = build(tiny_cfg(*DP, "privacy.clipping=client", "privacy.clip_norm=0.01"))
    driver.state = driver.strategy.init_state(driver.model)
    driver.backend.start(driver.specs, driver.setup)
    plan = driver.plan(1, driver.client_ids)
    assert all(step.clip == (("encoder", 0.01),) for steps in plan.values() for step in steps)
    for u in driver.backend.fit(driver.client_ids, driver.state, 1, plan):
        sent = {k: v for k, v in u.state.items() if k.startswith("encoder.") and v.is_floating_point()}
        assert update_norm(sent, driver.state["global"]) <= 0.01 * (1 + 1e-5)
