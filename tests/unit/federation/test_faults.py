"""Bad updates never reach the global model; a diverging run stops and says so."""

import dataclasses
import json
import math
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from mfed.aggregation.functional import select
from mfed.aggregation.robust import update_norm
from mfed.federation.checkpointing import load_checkpoint
from mfed.federation.driver import RoundFailed
from mfed.run import build, start
from mfed.types import ClientUpdate

BAD = "edges-1"  # one of the six clients of the default mix


class Tampering:
    """Wraps a backend; ``tamper`` may change or drop (return None) each update."""

    def __init__(self, inner, tamper: Callable[[ClientUpdate], ClientUpdate | None]) -> None:
        self.inner, self.tamper = inner, tamper

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def fit(self, client_ids, state, round_idx, plan):
        updates = [self.tamper(u) for u in self.inner.fit(client_ids, state, round_idx, plan)]
        return [u for u in updates if u is not None]


def scaled(factor: float) -> Callable[[ClientUpdate], ClientUpdate]:
    def tamper(u: ClientUpdate) -> ClientUpdate:
        if u.client_id != BAD:
            return u
        return dataclasses.replace(u, state={k: v * factor if v.is_floating_point() else v for k, v in u.state.items()})

    return tamper


def with_nan(u: ClientUpdate) -> ClientUpdate:
    if u.client_id != BAD:
        return u
    state = dict(u.state)
    key = next(k for k in state if k.startswith("encoder.") and k.endswith("weight"))
    state[key] = state[key].clone()
    state[key].view(-1)[0] = math.nan
    return dataclasses.replace(u, state=state)


def without_bad(u: ClientUpdate) -> ClientUpdate | None:
    return None if u.client_id == BAD else u


def run_tampered(tiny_cfg, tamper, *overrides, rounds: int = 1):
    driver = build(tiny_cfg(f"federation.rounds={rounds}", *overrides))
    driver.backend = Tampering(driver.backend, tamper)
    driver.run()
    return driver


def test_a_nan_update_is_rejected_reported_and_never_averaged(tiny_cfg):
    # Prepare / Execute
    poisoned = run_tampered(tiny_cfg, with_nan, rounds=2)
    honest = run_tampered(tiny_cfg, without_bad, rounds=2)
    # Assert: the global state is finite and exactly the state without that client
    for scope, tensors in honest.state.items():
        for key, value in tensors.items():
            assert torch.isfinite(poisoned.state[scope][key].float()).all()
            torch.testing.assert_close(poisoned.state[scope][key], value, rtol=0, atol=0)
    assert [r["fault/rejected"] for r in poisoned.history] == [1.0, 1.0]
    assert poisoned.history[0][f"fault/{BAD}/rejected"] == 1.0
    assert [(f.round, f.client_id) for f in poisoned.faults] == [(1, BAD), (2, BAD)]
    assert "1 non-finite values in encoder." in poisoned.faults[0].reason


def test_the_rejection_is_in_history_and_summary_json(tiny_cfg):
    cfg = tiny_cfg("federation.rounds=1")
    driver = start(build(cfg), cfg)
    driver.backend = Tampering(driver.backend, with_nan)
    driver.run()
    out = Path(cfg.out_dir)
    row = json.loads((out / "history.json").read_text())[0]
    assert row["faults"] == [{"round": 1, "client_id": BAD, "kind": "rejected", "reason": driver.faults[0].reason}]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "completed" and len(summary["faults"]) == 1


def encoder_distance(a, b) -> float:
    """Largest change of any encoder parameter or statistic (counters left out)."""
    floats = [k for k, v in a["global"].items() if v.is_floating_point()]
    return max(float((a["global"][k] - b["global"][k]).abs().max()) for k in floats)


@pytest.mark.parametrize("defence", ["clip_norm", "defences.robust=median", "defences.robust=trimmed_mean"])
def test_one_client_scaled_by_1e6_is_contained_by_each_defence(tiny_cfg, defence):
    # Prepare: the run without the bad client, its initial state, and its clients' update norms
    honest = run_tampered(tiny_cfg, without_bad)
    initial = honest.strategy.init_state(honest.model)
    honest_move = encoder_distance(honest.state, initial)
    # 0.17 of a task's 2 clients cuts none: the median over the 3 tasks' results bounds the attacker
    overrides = ["defences.trim_fraction=0.17", "defences.norm_ratio=null"]  # each defence alone
    if defence == "clip_norm":  # a bound at the honest update norm, as a user would set it
        probe = build(tiny_cfg("federation.rounds=1"))
        probe.state = initial
        probe.backend.start(probe.specs, probe.setup)
        updates = list(probe.backend.fit(probe.client_ids, initial, 1, probe.plan(1, probe.client_ids)))
        norms = [update_norm(select(u.state, ["encoder."]), initial["global"]) for u in updates]
        overrides.append(f"defences.clip_norm={sorted(norms)[len(norms) // 2]}")
    else:
        overrides.append(defence)
    # Execute
    undefended = run_tampered(tiny_cfg, scaled(1e6), "defences.norm_ratio=null")
    defended = run_tampered(tiny_cfg, scaled(1e6), *overrides)
    # Assert: undefended, the encoder moves by ~1e5; defended, it stays within one honest round's move
    assert encoder_distance(undefended.state, honest.state) > 1e4
    assert encoder_distance(defended.state, honest.state) <= honest_move, defence


def test_a_diverging_run_stops_naming_the_round_and_keeps_the_last_finite_checkpoint(tiny_cfg):
    cfg = tiny_cfg("federation.rounds=4", "optimizer.lr=1e12", "defences.norm_ratio=null")  # non-finite updates
    driver = start(build(cfg), cfg)
    with pytest.raises(RoundFailed, match=r"round \d: 0 of 6 updates accepted.*training diverged.*non-finite") as err:
        driver.run()
    failed_round = err.value.round
    summary = json.loads((Path(cfg.out_dir) / "summary.json").read_text())
    assert summary["status"] == "failed" and summary["rounds"] == failed_round - 1
    assert summary["rounds_planned"] == 4 and f"round {failed_round}" in summary["error"]
    if failed_round > 1:  # every checkpoint written is finite
        checkpoint = load_checkpoint(cfg.out_dir)
        assert checkpoint["round"] == failed_round - 1
        assert all(torch.isfinite(v.float()).all() for s in checkpoint["state"].values() for v in s.values())


def test_a_run_that_fails_midway_says_so_in_summary_json(tiny_cfg):
    cfg = tiny_cfg("federation.rounds=3")
    driver = start(build(cfg), cfg)

    def crash(u):
        if driver.history:
            raise RuntimeError("client process died")
        return u

    driver.backend = Tampering(driver.backend, crash)
    with pytest.raises(RuntimeError, match="client process died"):
        driver.run()
    summary = json.loads((Path(cfg.out_dir) / "summary.json").read_text())
    assert (summary["status"], summary["rounds"], summary["error"]) == (
        "failed",
        1,
        "RuntimeError: client process died",
    )
    assert not (Path(cfg.out_dir) / ".mfed.lock").exists()  # released whatever happened


@pytest.mark.parametrize("bad", ["4", "2.5", "0", "-0.5"])
def test_min_clients_neither_a_count_of_the_sampled_nor_a_fraction_is_refused(tiny_cfg, bad):
    # a value that is neither a count nor a fraction: the schema; a count beyond the 3 sampled: with the clients known
    message = r"a count in \[1, 3\] .*got 4$" if bad == "4" else rf"a count >= 1 or a fraction in \(0, 1\), got {bad} "
    with pytest.raises(ValueError, match="federation.min_clients must be " + message):
        build(tiny_cfg("federation.fraction=0.5", f"federation.min_clients={bad}"))


def test_min_clients_as_a_fraction_rounds_up_over_the_sampled_clients(tiny_cfg):
    # 6 clients, one update poisoned: 5 accepted meet 0.8 (ceil(4.8) = 5), miss 0.9 (ceil(5.4) = 6)
    passes = build(tiny_cfg("federation.rounds=1", "federation.min_clients=0.8"))
    passes.backend = Tampering(passes.backend, with_nan)
    assert passes.run()[0]["comm/clients"] == 5
    fails = build(tiny_cfg("federation.rounds=1", "federation.min_clients=0.9"))
    fails.backend = Tampering(fails.backend, with_nan)
    with pytest.raises(RoundFailed, match=r"5 of 6 updates accepted, fewer than federation.min_clients=0.9 \(6 "):
        fails.run()


def test_too_few_accepted_updates_fail_the_round_without_averaging(tiny_cfg):
    driver = build(tiny_cfg("federation.rounds=1", "federation.min_clients=6"))
    driver.backend = Tampering(driver.backend, with_nan)
    with pytest.raises(RoundFailed, match=r"round 1: 5 of 6 updates accepted, fewer than federation.min_clients=6"):
        driver.run()
    assert driver.history == [] and driver.status == "failed"
