"""Messages that say what happened: who moved a diverging state, a clip bound that stalls, a quiet healthy run."""

import json
import logging

from mfed.aggregation.functional import merge_scopes, select
from mfed.aggregation.robust import update_norm
from mfed.cli import main
from mfed.federation.divergence import LOSS_RATIO, divergence
from mfed.federation.driver import _listed
from mfed.federation.validation import Fault
from mfed.run import build
from mfed.tasks.semseg import SemanticSegmentation
from mfed.types import shared_scopes_of
from tests.conftest import TINY

TASKS = {"semseg": SemanticSegmentation()}


def rows(norms: dict[str, float]) -> list[dict[str, float]]:
    """Round 1 with these update norms, round 2 with the loss past its bound."""
    first = {"round": 1.0, "train/semseg/loss": 2.0, **{f"client/{c}/update_norm": n for c, n in norms.items()}}
    return [first, {"round": 2.0, "train/semseg/loss": 2.0 * LOSS_RATIO * 1.5}]


def test_a_rise_caused_by_one_client_names_it_with_its_update_norm_not_the_learning_rate():
    # Execute: c's update is 1000 / median(1, 1.2) = 909x the others'
    reason = divergence(rows({"a": 1.0, "b": 1.2, "c": 1000.0}), TASKS)
    # Assert
    assert reason.startswith("train/semseg/loss rose from 2 in round 1 to 300 (over 100x), first in round 2: ")
    assert "round 1's largest update norms: c 1e+03, b 1.2, a 1" in reason
    assert "c moved the state over 10x more than the other clients' median" in reason
    assert "defences.clip_norm" in reason and "optimizer.lr" not in reason


def test_a_rise_where_every_update_grew_alike_points_at_the_learning_rate():
    reason = divergence(rows({"a": 50.0, "b": 60.0, "c": 55.0}), TASKS)
    assert "round 1's largest update norms: b 60, c 55, a 50; the updates grew alike: lower optimizer.lr" in reason


def test_without_update_norms_the_learning_rate_is_the_only_lead():
    assert divergence(rows({}), TASKS).endswith("first in round 2: lower optimizer.lr")


def test_a_round_whose_updates_all_diverged_names_who_moved_the_state_it_started_from():
    # Prepare: round 2's every update is non-finite; round 1 folded one huge update
    faults = [Fault(2, c, "rejected", "3 non-finite values in encoder.w") for c in ("a", "b", "c")]
    previous = rows({"a": 1.0, "b": 1.2, "c": 1000.0})[0]
    # Execute / Assert
    assert _listed(faults, previous).startswith(" (training diverged: round 1's largest update norms: c 1e+03")
    assert _listed(faults).startswith(" (training diverged: lower optimizer.lr); a rejected, b rejected")


def part_norms(tiny_cfg) -> list[float]:
    """Every round-1 update's norm, part by part (the encoder; its task's decoder), measured here."""
    probe = build(tiny_cfg("federation.rounds=1"))
    probe.state = initial = probe.strategy.init_state(probe.model)
    probe.backend.start(probe.specs, probe.setup)
    norms = []
    for u in probe.backend.fit(probe.client_ids, initial, 1, probe.plan(1, probe.client_ids)):
        sent = merge_scopes(initial, shared_scopes_of(u.client_id, u.tasks))
        norms += [update_norm(select(u.state, [prefix]), sent) for prefix in ("encoder.", "decoders.")]
    return norms


def test_a_clip_bound_below_every_update_is_warned_of_once_in_console_and_summary(tiny_cfg, tmp_path, capsys, caplog):
    # Prepare: a bound at half the smallest honest update of a part (6 clients x 2 parts)
    norms = part_norms(tiny_cfg)
    assert len(norms) == 12
    clip = min(norms) / 2
    # Execute
    code = main(["train", *TINY, "federation.rounds=2", f"defences.clip_norm={clip}", f"out_dir={tmp_path / 'r'}"])
    # Assert: one warning (round 1 only), naming the key, its value and the smallest norm; in summary.json too
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert code == 0 and summary["status"] == "completed"
    [warning] = summary["warnings"]
    assert warning["round"] == 1 and warning["setting"] == "defences.clip_norm"
    assert f"defences.clip_norm={clip:g} clipped all 12 parts folded in round 1" in warning["message"]
    assert f"the smallest update of a part had norm {min(norms):.3g}" in warning["message"]
    assert "raise defences.clip_norm" in warning["message"]
    assert f"round 1: {warning['message']}" in capsys.readouterr().out
    warned = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert warned == [f"round 1: {warning['message']}"]


def test_a_healthy_run_and_a_bound_above_every_update_print_no_warning(tiny_cfg, tmp_path, caplog):
    # Prepare: a bound over the largest update of a part clips nothing
    clip = 2 * max(part_norms(tiny_cfg))
    # Execute
    code = main(["train", *TINY, f"defences.clip_norm={clip}", f"out_dir={tmp_path / 'r'}"])
    # Assert
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert code == 0 and summary["status"] == "completed" and summary["warnings"] == []
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
