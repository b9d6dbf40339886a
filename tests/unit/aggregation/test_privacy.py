"""Client-level DP: the noise, joint clipping, adaptive clipping, secret noise, accounting, resume, refusals."""

import math
import re
import shutil

import dp_accounting as dpa
import pytest
import torch
from dp_accounting.pld import pld_privacy_accountant as pld
from dp_accounting.rdp import rdp_privacy_accountant as rdp
from scipy.optimize import brentq
from scipy.stats import norm

from mfed.aggregation import Ditto, FedAvgAll, FedAvgPerTask, Local, MFed, MFedCA
from mfed.aggregation.accounting import calibrate, epsilon
from mfed.aggregation.defences import Defences
from mfed.aggregation.fold import Pipeline, aggregate
from mfed.aggregation.privacy import DifferentialPrivacy
from mfed.aggregation.robust import update_norm
from mfed.federation.validation import Screen
from mfed.run import build, start
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

TASKS = ("semseg", "depth", "edges")
SIX = [ClientSpec(f"{t}-{i}", t, (i,), (), i) for t in TASKS for i in range(2)]  # the default federation's shape


def zero_state(strategy, size=60_000):
    """``strategy``'s state for one 1-D encoder and one decoder per task, all zeros."""
    full = {"encoder.w": torch.zeros(size), **{f"decoders.{t}.w": torch.zeros(size) for t in TASKS}}
    model = type("Model", (), {"state_dict": lambda self: full, "tasks": list(TASKS)})()
    return strategy.init_state(model)


def echo(spec, state, value=0.0):
    """``spec``'s update that sends back what it was sent (plus ``value`` on every coordinate)."""
    sent = {}
    for scope, tensors in state.items():
        if scope == "global" or scope.removeprefix("task:") in spec.tasks:
            sent.update({k: v + value for k, v in tensors.items() if k.startswith(("encoder.", "decoders."))})
    mine = {k: v for k, v in sent.items() if not k.startswith("decoders.") or k.split(".")[1] in spec.tasks}
    return ClientUpdate(spec.client_id, spec.tasks, 10, mine)


def test_the_noise_has_the_standard_deviation_of_its_formula():
    # Prepare: 4 of 8 clients sampled, z = 1.5, C = 2: std z * C / 4 = 0.75 per coordinate of the mean update
    strategy = private(noise_multiplier=1.5, clip_norm=2.0)
    updates = [update(f"t-{i}", torch.zeros(200_000)) for i in range(4)]  # no movement: only noise remains
    # Execute
    new = aggregate(strategy, STATE, updates, round_idx=1)
    # Assert: measured over 200,000 draws (the std's standard error is about 0.16 %)
    noise = new["global"]["encoder.w"].double()
    assert float(noise.std()) == pytest.approx(0.75, rel=0.01)
    assert abs(float(noise.mean())) < 0.01
    assert torch.equal(new["task:t"]["decoders.t.w"], torch.ones(1))  # the decoder is not protected: its mean


def test_one_round_of_mfed_whose_clients_send_back_what_they_were_sent_moves_by_the_noise_alone():
    # Prepare: six clients, two per task, all sampled; z = 1, C = 1, encoder and decoders protected
    fold = private(clients=SIX, fraction=1.0, noise_multiplier=1.0, clip_norm=1.0, parts=["encoder", "decoder"])
    state = zero_state(fold.strategy)
    # Execute
    new = aggregate(fold, state, [echo(s, state) for s in SIX], round_idx=1)
    # Assert: the encoder's mean over 6 clients: std 1/6; each decoder's over its 2 clients: 1/2 (within 10 %)
    assert float(new["global"]["encoder.w"].std()) == pytest.approx(1 / 6, rel=0.1)
    for t in TASKS:
        assert float(new[f"task:{t}"][f"decoders.{t}.w"].std()) == pytest.approx(1 / 2, rel=0.1)


def test_adaptive_clipping_splits_the_budget_as_published_and_refuses_what_it_cannot_split():
    # Prepare: z = 0.5, six clients sampled, the default count noise sigma_b = 6 / 20
    fold = private(clients=SIX, fraction=1.0, noise_multiplier=0.5, clip_norm=1.0, adaptive=True)
    state = zero_state(fold.strategy)
    # Execute
    new = aggregate(fold, state, [echo(s, state) for s in SIX], round_idx=1)
    # Assert: z_d = (0.5^-2 - (2 * 0.3)^-2)^-1/2 = 0.9045 (Andrew et al., eq. of Theorem 1), std z_d * C / 6
    assert float(new["global"]["encoder.w"].std()) == pytest.approx(0.9045 / 6, rel=0.1)
    with pytest.raises(ValueError, match=r"z < 2 sigma_b.*z=4 and sigma_b=0\.3.*privacy.count_noise above 2") as err:
        private(clients=SIX, fraction=1.0, noise_multiplier=4.0, adaptive=True)
    assert "\n" not in str(err.value)
    assert private(clients=SIX * 4, fraction=1.0, noise_multiplier=0.5, adaptive=True)  # 24 clients: sigma_b 1.2


@pytest.mark.parametrize("strategy", [MFed(), FedAvgPerTask(), Ditto(), MFedCA()], ids=lambda s: s.name)
@pytest.mark.parametrize("held", [1, 2, 3])
def test_one_client_moves_every_scope_it_folds_into_by_at_most_the_bound_together(strategy, held):
    # Prepare: no noise; one client holding `held` tasks sends +100 on every encoder and decoder parameter
    spec = ClientSpec("attacker", TASKS[:held], (0,), (), 0)
    fold = private(
        strategy, clients=[spec], fraction=1.0, noise_multiplier=0.0, clip_norm=1.0, parts=["encoder", "decoder"]
    )
    state = zero_state(fold.strategy, size=1000)
    round_ = fold.round(state, 1)
    round_.add(echo(spec, state, 100.0))
    round_.combiner.inner.result()  # the protected sums are the private round's own
    sums = round_.combiner.sums  # each scope's sum of the client's clipped contributions
    # Assert: over all scopes together the contribution's norm is the bound, C = 1 (it was clipped once, jointly)
    scopes = {scope for scope, _ in fold.strategy.route(echo(spec, state, 100.0), state)}
    assert set(sums) == scopes and len(scopes) >= held
    total = math.sqrt(sum(float(v.square().sum()) for tensors in sums.values() for v in tensors.values()))
    assert total == pytest.approx(1.0, rel=1e-9)
    new = aggregate(fold, state, [echo(spec, state, 100.0)], round_idx=1)
    moved = sum(float(((new[s][k].double() - state[s][k].double()) * fold.privacy.expected[s]).square().sum())
                for s in new if s in state for k in new[s] if fold.privacy.protected(k) and s in scopes)  # fmt: skip
    assert moved <= 1.0 + 1e-6


def test_the_noise_is_secret_unless_asked_to_be_reproducible():
    fold = private(noise_multiplier=1.0)
    updates = [update(f"t-{i}", torch.zeros(1000)) for i in range(4)]
    state = {"global": {"encoder.w": torch.zeros(1000)}, "task:t": {"decoders.t.w": torch.zeros(1)}}
    first, second = (aggregate(fold, state, updates, round_idx=1) for _ in range(2))
    assert not torch.equal(first["global"]["encoder.w"], second["global"]["encoder.w"])
    seed = first["server"]["privacy/noise_seed"]
    assert seed.dtype == torch.int64 and seed.numel() == 4 and int(seed.max()) < 2**32
    # the seed kept: the next round draws from it, whoever resumes
    kept = {**state, "server": first["server"]}
    again = [aggregate(fold, kept, updates, round_idx=2)["global"]["encoder.w"] for _ in range(2)]
    assert torch.equal(again[0], again[1])
    replay = private(noise_multiplier=1.0, reproducible_noise=True)
    assert torch.equal(*(aggregate(replay, state, updates, round_idx=1)["global"]["encoder.w"] for _ in range(2)))


def test_client_side_clipping_counts_the_clients_own_within_bits():
    # Prepare: adaptive clipping; the server sees only clipped updates, each exactly at the bound
    fold = private(noise_multiplier=0.0, clip_norm=1.0, adaptive=True, clipping="client", count_noise=1e-9)
    at_bound = torch.zeros(200_000)
    at_bound[0] = 1.0
    ups = [update(f"t-{i}", at_bound) for i in range(4)]
    outside = [ClientUpdate(u.client_id, u.tasks, 5, u.state, within_bound=False) for u in ups]
    inside = [ClientUpdate(u.client_id, u.tasks, 5, u.state, within_bound=True) for u in ups]
    # Execute / Assert: C <- C exp(-0.2 (b - 0.5)) with b the share the clients said was within
    for said, share in ((outside, 0.0), (inside, 1.0)):
        clip = float(aggregate(fold, STATE, said, round_idx=1)["server"]["privacy/clip_norm"])
        assert clip == pytest.approx(math.exp(-0.2 * (share - 0.5)), rel=1e-6)


def test_the_norm_ratio_screen_under_dp_names_no_norm_and_uses_no_other_clients_norms():
    spec = ClientSpec("t-0", "t", tuple(range(5)), (), 0)
    state = {"global": {"encoder.w": torch.ones(10)}, "task:t": {"decoders.t.w": torch.ones(1)}}
    big = ClientUpdate("t-0", "t", 5, {"encoder.w": torch.full((10,), 50.0), "decoders.t.w": torch.ones(1)})
    layout = ({"encoder.w": ((10,), torch.float32), "decoders.t.w": ((1,), torch.float32)}, {})
    medians = {"t/encoder": 1e-6}  # the others' norms: used in the clear, ignored under DP
    clear = Screen({"t-0": spec}, {"t-0": layout}, 1, state, medians, 10.0)
    hidden = Screen({"t-0": spec}, {"t-0": layout}, 1, state, medians, 10.0, private=True)
    shown = clear(big).reason
    assert "median" in shown and "155" in shown  # the norm 49 * sqrt(10) in the clear
    reason = hidden(big).reason
    assert "defences.norm_ratio" in reason and not any(c.isdigit() for c in reason.replace("10 x", ""))
    small = ClientUpdate("t-0", "t", 5, {"encoder.w": torch.full((10,), 2.0), "decoders.t.w": torch.ones(1)})
    assert Screen({"t-0": spec}, {"t-0": layout}, 1, state, medians, 10.0, private=True)(small) is None


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


def exact_epsilon(z, rounds, delta):
    """The exact epsilon of ``rounds`` Gaussian mechanisms of sensitivity 2 and std z (Balle and Wang 2018, GDP)."""
    mu = math.sqrt(rounds) * 2 / z
    return brentq(lambda e: norm.cdf(-e / mu + mu / 2) - math.exp(e) * norm.cdf(-e / mu - mu / 2) - delta, 0, 500)


@pytest.mark.parametrize(("z", "rounds"), [(1.0, 5), (0.7, 10), (4.0, 100)])
def test_epsilon_at_sampling_rate_one_is_at_least_the_exact_value_and_within_ten_percent(z, rounds):
    # The PLD accountant takes GaussianDpEvent(z) under REPLACE_ONE as sensitivity 2 itself (hence no z / 2):
    # it equals the exact value; the RDP bound mfed logs is above both and within 10 %
    accountant = pld.PLDAccountant(neighboring_relation=dpa.NeighboringRelation.REPLACE_ONE)
    accountant.compose(dpa.SelfComposedDpEvent(dpa.GaussianDpEvent(z), rounds))
    exact = exact_epsilon(z, rounds, 1e-5)
    assert accountant.get_epsilon(1e-5) == pytest.approx(exact, rel=1e-3)
    assert exact <= epsilon(z, 8, 8, rounds, 1e-5) <= 1.1 * exact


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
        (lambda: private(adaptive=True, noise_multiplier=1.0), r"z < 2 sigma_b.*count_noise above 0.5"),
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


DP = ("privacy=dp", "privacy.noise_multiplier=0.5", "privacy.clip_norm=0.5", "model.encoder.norm=group")


def test_protected_batchnorm_statistics_are_refused_naming_groupnorm(tiny_cfg):
    with pytest.raises(
        ValueError, match="privacy=dp protects the encoder, whose BatchNorm .* model.encoder.norm=group"
    ):
        build(tiny_cfg("privacy=dp", "model.encoder.norm=batch"))


def test_a_dp_run_logs_epsilon_every_round_releases_no_norm_and_writes_the_noise_seed_nowhere(tiny_cfg, tmp_path):
    cfg = tiny_cfg(*DP, "federation.rounds=3", "defences.clip_norm=0.001", f"out_dir={tmp_path / 'dp'}")
    driver = build(cfg)
    history = start(driver, cfg).run()
    eps = [row["privacy/epsilon"] for row in history]
    assert eps == [driver.fold.privacy.epsilon(r) for r in (1, 2, 3)] and eps[0] < eps[1] < eps[2]
    assert all(math.isfinite(e) for e in eps)
    assert not any(
        k.startswith(("client/", "diag/", "agg/clipped")) or "norm_median" in k for row in history for k in row
    )
    assert "test/semseg/mIoU" in history[-1] and "norm_medians" not in driver.meta
    words = [str(w) for w in driver.state["server"]["privacy/noise_seed"].tolist()]
    for path in (tmp_path / "dp").rglob("*"):
        if path.is_file() and path.suffix in (".json", ".yaml", ".md", ".log", ".csv", ".txt"):
            text = path.read_text(errors="replace")
            assert not any(w in text for w in words), path
            assert re.search(r'"(client|diag)/[^"]*":', text) is None, path  # no per-client key


class CopyAfter:
    """A run callback that copies the run's folder as round ``n`` left it (a run killed after round ``n``)."""

    def __init__(self, n, source, target):
        self.n, self.source, self.target = n, source, target

    def on_start(self, driver):
        pass

    def on_round_end(self, driver, row):
        if int(row["round"]) == self.n:
            shutil.copytree(self.source, self.target, ignore=shutil.ignore_patterns("*.lock"))

    def on_end(self, driver):
        pass


def test_a_dp_run_resumes_bit_exact_with_its_secret_noise(tiny_cfg, tmp_path):
    # Prepare: adaptive clipping and client-side clipping too, so the server scope and the plan are exercised
    options = (*DP, "privacy.adaptive=true", "privacy.count_noise=1.5", "privacy.clipping=client")
    straight = tiny_cfg(*options, f"out_dir={tmp_path / 'straight'}")
    whole = start(build(straight), straight)
    whole.callbacks = [*whole.callbacks, CopyAfter(1, tmp_path / "straight", tmp_path / "cut")]
    whole.run()
    # Execute: the copy of round 1 resumed (as after a SIGKILL), in its own folder
    again = tiny_cfg(*options, f"resume={tmp_path / 'cut'}", "out_dir=null")
    resumed = build(again)
    start(resumed, again).run()
    # Assert: the same noised state from the seed kept in the checkpoint, and the adapted bound
    for scope, tensors in whole.state.items():
        for key, value in tensors.items():
            assert torch.equal(resumed.state[scope][key], value), (scope, key)
    assert float(whole.state["server"]["privacy/clip_norm"]) != 0.5
    other = tiny_cfg(*options, f"out_dir={tmp_path / 'other'}")  # the same config run again draws another secret
    rerun = start(build(other), other)
    rerun.run()
    key = next(iter(whole.state["global"]))
    assert not torch.equal(rerun.state["global"][key], whole.state["global"][key])


def test_client_side_clipping_bounds_what_each_client_sends(tiny_cfg):
    driver = build(tiny_cfg(*DP, "privacy.clipping=client", "privacy.clip_norm=0.01"))
    driver.state = driver.strategy.init_state(driver.model)
    driver.backend.start(driver.specs, driver.setup)
    plan = driver.plan(1, driver.client_ids)
    assert all(step.clip == (("encoder",), 0.01) for steps in plan.values() for step in steps)
    for u in driver.backend.fit(driver.client_ids, driver.state, 1, plan):
        sent = {k: v for k, v in u.state.items() if k.startswith("encoder.") and v.is_floating_point()}
        assert update_norm(sent, driver.state["global"]) <= 0.01 * (1 + 1e-5)
        assert u.within_bound is False  # a round of training moves the encoder by far more than 0.01


def test_a_scope_whose_noise_outweighs_its_clipped_updates_over_the_run_is_named():
    # 4 of 8 clients per round, z = 1: noise norm 1 * sqrt(10,000) / 4 = 25 C a round against at most C
    fold = private(noise_multiplier=1.0)
    state = {"global": {"encoder.w": torch.zeros(10_000)}, "task:t": {"decoders.t.w": torch.zeros(1)}}
    (line,) = fold.privacy.drowned(state, rounds=100)  # 25 / sqrt(100) = 2.5 to 1; the decoder is not protected
    assert "scope global" in line and "25 C" in line and "2.5 to 1" in line and "about 10 clients" in line
    assert fold.privacy.drowned(state, rounds=1000) == []  # 25 / sqrt(1000) < 1
