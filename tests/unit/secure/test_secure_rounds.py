"""secure_aggregation=secagg_plus in the round loop: the plain fold's state within the quantisation bound, for every
strategy's scopes; what the driver receives; dropouts; refusals."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mfed.aggregation.fold import aggregate
from mfed.federation.driver import RoundFailed
from mfed.run import build
from mfed.secure.protocol import PublicKeys, Unmasking
from mfed.types import ClientUpdate

SECURE = "secure_aggregation=secagg_plus"


def first_round(cfg, wrap=None):
    """Round 1 of ``cfg``'s run: the driver (its state after the round) and the round's row."""
    driver = build(cfg)
    driver.state = driver.strategy.init_state(driver.model)
    driver.backend.start(driver.specs, driver.setup)
    if wrap is not None:
        driver.backend = wrap(driver.backend)
    start = driver.state
    row = driver.run_round(1)
    return driver, start, row


def worst(state, reference) -> float:
    """The largest difference of any value of ``state`` from ``reference``'s, over every scope of ``reference``."""
    return max(
        float((state[s][k].double() - v.double()).abs().max()) for s in reference for k, v in reference[s].items()
    )


def tolerance(driver, row) -> float:
    """The decoded mean's bound: the ring sum's error (count / 2s) times the largest weight over the total; float32."""
    weights = [len(s.train_indices) for s in driver.specs]
    return driver.fold.secure.error_bound(len(weights)) * max(weights) / min(weights) + 1e-6


@pytest.mark.parametrize(
    "overrides",
    [
        ("task_mix=seg_depth", "partition=quantity_skew"),  # M-Fed, clients of unequal weights
        ("aggregation=fedavg", "federation=mixed"),  # the encoder once per task held
        ("aggregation=fedavg_all",),  # decoders' shared parameters in soups
        ("task_mix=seg_depth", "aggregation=mfed_ca"),  # task means and a server step
        ("task_mix=seg_depth", "server_optimizer=adam"),
        ("task_mix=seg_depth", "aggregation=fedrep"),  # the encoder only; decoders stay with the clients
        ("task_mix=seg_depth", "aggregation=ditto"),  # the global model; personal ones kept by the clients
        ("federation=mixed",),  # M-Fed with clients holding several tasks
    ],
)
def test_the_state_after_round_one_is_the_plain_folds_within_the_bound(tiny_cfg, overrides):
    plain, _, _ = first_round(tiny_cfg(*overrides, "federation.rounds=1"))
    secure, _, row = first_round(tiny_cfg(*overrides, "federation.rounds=1", SECURE))
    assert set(secure.state) == set(plain.state)
    assert worst(secure.state, plain.state) <= tolerance(secure, row)
    initial = build(tiny_cfg(*overrides)).model.state_dict()
    scope = min(plain.state)
    moved = max(float((v.double() - initial[k].double()).abs().max()) for k, v in plain.state[scope].items())
    assert moved > 100 * tolerance(secure, row)  # the comparison is not trivially met
    if "partition=quantity_skew" in overrides:  # so that weighting by examples differs from a plain mean
        assert len({len(s.train_indices) for s in secure.specs}) > 1
    assert row["agg/secure_dropped"] == 0 and row["agg/secure_clipped"] == 0
    assert row["comm/bytes_up"] == row["agg/secure_bytes_up"] > 0


DP = ("privacy=dp", "privacy.clipping=client", "model.encoder.norm=group", "privacy.reproducible_noise=true")


@pytest.mark.parametrize(
    "overrides",
    [
        ("task_mix=seg_depth", "partition=quantity_skew", "privacy.noise_multiplier=0.5"),
        ("task_mix=seg_depth", "privacy.noise_multiplier=0.5", "privacy.adaptive=true", "privacy.count_noise=1.0"),
        ("aggregation=fedavg", "federation=mixed", "privacy.noise_multiplier=0.3", "privacy.parts=[encoder,decoder]"),
    ],
)
def test_with_dp_the_state_is_the_plain_private_folds_within_the_bound(tiny_cfg, overrides):
    """Central noise after unmasking: the clients clip jointly over every route, the sums are noised as in the clear.

    The noise is made reproducible so that both runs draw the same; the clip bound and, when
    adaptive, the next bound (from the count of clients within it, summed securely) agree too.
    """
    plain, _, plain_row = first_round(tiny_cfg(*DP, *overrides, "federation.rounds=1"))
    secure, _, row = first_round(tiny_cfg(*DP, *overrides, "federation.rounds=1", SECURE))
    assert set(secure.state) == set(plain.state)
    assert worst(secure.state, plain.state) <= tolerance(secure, row)
    assert row["privacy/epsilon"] == plain_row["privacy/epsilon"]
    if "privacy.adaptive=true" in overrides:
        assert float(secure.state["server"]["privacy/clip_norm"]) != 1.0  # it moved: the count reached the server


class Recording:
    """A backend that records what the driver receives, and drops clients at a step."""

    def __init__(self, inner, drop=None):
        self.inner, self.drop, self.received, self.fitted = inner, drop or {}, [], []

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def fit(self, *args, **kwargs):
        for outcome in self.inner.fit(*args, **kwargs):
            self.fitted.append(outcome)
            yield outcome

    def secure(self, step, payloads):
        replies = self.inner.secure(step, payloads)
        replies = {c: r for c, r in replies.items() if c not in self.drop.get(step, ())}
        self.received.append((step, replies))
        return replies


def test_the_driver_receives_no_update_and_only_masked_values(tiny_cfg):
    record = first_round(tiny_cfg("task_mix=seg_depth", "federation.rounds=1", SECURE), Recording)[0].backend
    assert all(isinstance(u, ClientUpdate) and u.state == {} for u in record.fitted)
    kinds = {step: {type(v) for r in replies.values() for v in r.values()} for step, replies in record.received}
    assert kinds["advertise"] == {PublicKeys} and kinds["unmask"] == {Unmasking}
    assert all(
        isinstance(box, bytes)
        for _, replies in record.received[1:2]
        for r in replies.values()
        for b in r.values()
        for box in b.values()
    )
    masked = [(c, s, y) for c, r in record.received[2][1].items() for s, y in r.items()]
    assert {s for _, s, _ in masked} == {"global", "task:semseg", "task:depth"}
    for _, _, y in masked:
        assert y.dtype == np.uint64
        top = (y >> np.uint64(48 - 4)).astype(np.int64)  # the values spread over the whole ring: 16 top bins
        assert np.bincount(top, minlength=16).min() > 0.5 * len(y) / 16


@pytest.mark.parametrize("dropped", [1, 2])
def test_dropouts_after_masking_are_recovered_exactly(tiny_cfg, dropped):
    """Clients that drop after sending their masked input are in the sum: the plain fold over all, within the bound."""
    overrides = ("task_mix=seg_depth", "federation.clients_per_task=3", "federation.rounds=1")
    plain, _, _ = first_round(tiny_cfg(*overrides))
    gone = ["semseg-0", "depth-2"][:dropped]
    secure, _, row = first_round(tiny_cfg(*overrides, SECURE), lambda b: Recording(b, {"unmask": gone}))
    assert worst(secure.state, plain.state) <= tolerance(secure, row)


def test_a_dropout_before_masking_leaves_the_sum_of_the_others(tiny_cfg):
    overrides = (
        "task_mix=seg_depth",
        "federation.clients_per_task=3",
        "federation.rounds=1",
        "partition=quantity_skew",
    )
    secure, start, row = first_round(tiny_cfg(*overrides, SECURE), lambda b: Recording(b, {"share": ["semseg-1"]}))
    record = secure.backend
    assert row["agg/secure_dropped"] == 1
    survivors = [u for u in record.fitted if u.client_id != "semseg-1"]
    plain = build(tiny_cfg(*overrides))
    plain.backend.start(plain.specs, plain.setup)
    updates = [
        u
        for u in plain.backend.fit(plain.client_ids, start, 1, plain.plan(1, plain.client_ids))
        if u.client_id != "semseg-1"
    ]
    assert [u.client_id for u in updates] == [u.client_id for u in survivors]
    expected = aggregate(plain.fold, start, updates)
    assert worst(secure.state, expected) <= tolerance(secure, row)


def test_too_many_dropouts_fail_the_round_and_keep_the_state(tiny_cfg):
    """6 clients: the encoder's threshold is 4 of 6; 3 clients gone before unmasking leave 3 shares of each seed."""
    cfg = tiny_cfg("task_mix=seg_depth", "federation.clients_per_task=3", "federation.rounds=1", SECURE)
    driver = build(cfg)
    driver.state = start = driver.strategy.init_state(driver.model)
    driver.backend.start(driver.specs, driver.setup)
    driver.backend = Recording(driver.backend, {"unmask": ["semseg-0", "semseg-1", "depth-0"]})
    with pytest.raises(RoundFailed, match="secure aggregation aborted: scope .*too many clients dropped out"):
        driver.run_round(1)
    assert driver.state is start


def test_a_scope_left_with_one_client_is_not_summed_and_keeps_its_state(tiny_cfg):
    cfg = tiny_cfg("task_mix=seg_depth", "federation.rounds=1", SECURE)
    driver, start, row = first_round(cfg, lambda b: Recording(b, {"mask": ["semseg-0"]}))
    assert row["agg/secure_skipped"] == 1 and row["agg/secure_dropped"] == 1
    for key, value in start["task:semseg"].items():
        assert torch.equal(driver.state["task:semseg"][key], value), key
    assert not torch.equal(driver.state["task:depth"][key := next(iter(start["task:depth"]))], start["task:depth"][key])
    assert any(not torch.equal(driver.state["global"][k], v) for k, v in start["global"].items())


@pytest.mark.parametrize(
    "override, named",
    [
        ("defences.robust=median", "defences.robust=median"),
        ("aggregation=fedhca2", "aggregation=fedhca2"),
        ("privacy=dp", "privacy"),
        ("defences.clip_norm=1.0", "defences.clip_norm"),
    ],
)
def test_stages_that_need_individual_updates_are_refused_naming_both_keys(tiny_cfg, override, named):
    with pytest.raises(
        ValueError, match=rf"{named}.*secure_aggregation=secagg_plus|secure_aggregation=secagg_plus.*{named}"
    ):
        build(tiny_cfg("task_mix=seg_depth", override, SECURE))


def test_a_scope_of_one_client_is_refused_before_anything_starts(tiny_cfg):
    with pytest.raises(
        ValueError, match=r"scope task:depth has 1 client, and a sum of one client is its update.*clients_per_task"
    ):
        build(tiny_cfg("task_mix=seg_depth", "federation.clients_per_task=1", SECURE))


def test_settings_are_checked_naming_the_field():
    from mfed.secure.rounds import SecureAggregation

    with pytest.raises(ValueError, match="secure_aggregation.bits must be an int in 8..62, got 64"):
        SecureAggregation(bits=64)
    with pytest.raises(ValueError, match="secure_aggregation.clip_range must be >= 1, got 0.5"):
        SecureAggregation(clip_range=0.5)
    with pytest.raises(ValueError, match="secure_aggregation.neighbours must be auto, all or an even number"):
        SecureAggregation(neighbours="some")
    assert SecureAggregation().error_bound(6) == 6 / (2 * 2.0**38)  # K = (2^47 - 1) // 6 = 2.3e13; K / 64 >= 2^38
    assert torch.finfo(torch.float32).eps > SecureAggregation().error_bound(100)


@pytest.mark.parametrize("extra", [(), (*DP, "privacy.noise_multiplier=0.5")])
def test_a_resumed_secure_run_ends_bit_identically(tiny_cfg, tmp_path, extra):
    """The graphs come from (run seed, round) and the decoded sums are exact: masks drawn afresh change nothing."""
    from mfed.run import run

    args = ("task_mix=seg_depth", "federation.clients_per_task=3", "federation.fraction=0.5", SECURE, *extra)
    straight = build(tiny_cfg(*args, "federation.rounds=3", f"out_dir={tmp_path / 'straight'}"))
    straight.run()
    run(tiny_cfg(*args, "federation.rounds=2", f"out_dir={tmp_path / 'first'}"))
    resumed = build(tiny_cfg(*args, "federation.rounds=3", f"resume={tmp_path / 'first'}", f"out_dir={tmp_path / 'b'}"))
    resumed.run()
    assert set(resumed.state) == set(straight.state)
    for scope, tensors in straight.state.items():
        for key, value in tensors.items():
            torch.testing.assert_close(resumed.state[scope][key], value, rtol=0, atol=0)
    assert resumed.history[-1] == {**straight.history[-1], "time/round_s": resumed.history[-1]["time/round_s"]}


def test_distributed_noise_gives_the_sums_their_noise_before_masking(tiny_cfg):
    """Each client adds z C / sqrt(t) to each protected coordinate; the driver adds none.

    Against the central run with the same (reproducible) noise on the same clipped sums, the global
    encoder differs by the two noises: std (z C / m) sqrt(1 + n / t), here m = n = 4 clients and
    t = 3 (a majority of 4 holders); the decoders (not protected) agree within the bound.
    """
    args = (*DP, "task_mix=seg_depth", "privacy.noise_multiplier=1.0", "federation.rounds=1", SECURE)
    central, _, row = first_round(tiny_cfg(*args))
    spread, _, _ = first_round(tiny_cfg(*args, "secure_aggregation.dp_noise=distributed"))
    diff = torch.cat(
        [(spread.state["global"][k].double() - v.double()).reshape(-1) for k, v in central.state["global"].items()]
    )
    expected = 1.0 * 1.0 / 4 * (1 + 4 / 3) ** 0.5
    assert diff.numel() > 2000
    assert abs(float(diff.std()) / expected - 1) < 0.06
    for scope in ("task:semseg", "task:depth"):
        for key, value in central.state[scope].items():
            assert float((spread.state[scope][key].double() - value.double()).abs().max()) <= tolerance(central, row)


@pytest.mark.parametrize(
    "overrides, message",
    [
        ((), "dp_noise=distributed needs privacy=dp"),
        ((*DP, "privacy.adaptive=true", "privacy.count_noise=1.0", "privacy.noise_multiplier=0.5"), "adaptive"),
    ],
)
def test_distributed_noise_is_refused_where_it_cannot_hold(tiny_cfg, overrides, message):
    with pytest.raises(ValueError, match=message):
        build(tiny_cfg("task_mix=seg_depth", *overrides, SECURE, "secure_aggregation.dp_noise=distributed"))


def test_secrets_stay_with_the_clients_and_sessions_close(tiny_cfg):
    """Ditto keeps each client's personal model in the driver's client:<id> scope: model tensors only."""
    driver, _, _ = first_round(
        tiny_cfg("task_mix=seg_depth", "aggregation=ditto", "federation.rounds=1", SECURE), Recording
    )
    record = driver.backend
    kept = {s: v for s, v in driver.state.items() if s.startswith("client:")}
    assert len(kept) == 4
    model = set(driver.model.state_dict())
    assert all(set(v) <= model | {k for k in v if k.startswith("weighting.")} for v in kept.values())
    assert record.inner.sessions._open == {}  # every session closed after unmasking: no key or seed lingers
    assert all(u.within_bound is None for u in record.fitted)
