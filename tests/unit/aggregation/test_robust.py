import numpy as np
import pytest
import torch
from scipy import stats
from torch import nn

from mfed.aggregation import FedAvgAll, FedAvgPerTask, FedRep, Local, MFed, MFedCA
from mfed.aggregation.defences import Defences
from mfed.aggregation.fold import Pipeline, aggregate
from mfed.aggregation.robust import clip_update, coordinate_median, trimmed_mean, update_norm
from mfed.models.multitask import MultiTaskModel
from mfed.types import ClientUpdate

RNG = np.random.default_rng(0)
VALUES = RNG.normal(size=(7, 3, 4))  # 7 clients, a (3, 4) tensor each


def states(values: np.ndarray) -> list[dict[str, torch.Tensor]]:
    return [
        {"encoder.w": torch.tensor(v, dtype=torch.float32), "encoder.count": torch.tensor(i)}
        for i, v in enumerate(values)
    ]


def test_update_norm_and_clipping_against_a_hand_computation():
    reference = {"encoder.w": torch.zeros(2), "encoder.count": torch.tensor(0)}
    state = {"encoder.w": torch.tensor([3.0, 4.0]), "encoder.count": torch.tensor(9)}
    assert update_norm(state, reference) == pytest.approx(5.0)  # counters are not updates
    clipped = clip_update(state, reference, max_norm=1.0)
    torch.testing.assert_close(clipped["encoder.w"], torch.tensor([0.6, 0.8]))
    assert clipped["encoder.count"] == 9
    assert clip_update(state, reference, max_norm=10.0)["encoder.w"].tolist() == [3.0, 4.0]  # short updates pass


def test_clipping_measures_from_the_reference_not_from_zero():
    reference = {"encoder.w": torch.tensor([10.0, 10.0])}
    clipped = clip_update({"encoder.w": torch.tensor([13.0, 14.0])}, reference, max_norm=2.5)
    torch.testing.assert_close(clipped["encoder.w"], torch.tensor([11.5, 12.0]))


@pytest.mark.parametrize("n", [7, 6])
def test_median_matches_numpy(n):
    out = coordinate_median(states(VALUES[:n]))
    np.testing.assert_allclose(out["encoder.w"].numpy(), np.median(VALUES[:n], axis=0), rtol=1e-6)
    assert out["encoder.count"].dtype == torch.int64
    assert out["encoder.count"] == np.round(np.median(np.arange(n)))  # half to even, as torch.round


@pytest.mark.parametrize(("n", "fraction"), [(7, 0.1), (7, 0.2), (6, 0.34), (5, 0.0)])
def test_trimmed_mean_matches_scipy(n, fraction):
    out = trimmed_mean(states(VALUES[:n]), fraction)
    np.testing.assert_allclose(out["encoder.w"].numpy(), stats.trim_mean(VALUES[:n], fraction, axis=0), rtol=1e-6)


def defended(strategy=None, **defences):
    return Pipeline(strategy or MFed(), Defences(**defences))


def test_bad_defence_settings_name_the_field():
    with pytest.raises(ValueError, match=r"defences.trim_fraction must lie in \[0, 0.5\), got 0.5"):
        Defences(robust="trimmed_mean", trim_fraction=0.5)
    with pytest.raises(ValueError, match=r"defences.robust must be null, one of \['median', 'trimmed_mean'\], or an"):
        Defences(robust="mean")
    with pytest.raises(ValueError, match=r"defences.clip_norm must be > 0 or null \(off\), got 0"):
        defended(FedAvgPerTask(), clip_norm=0)


def test_defences_wrap_any_averaging_strategy_and_refuse_one_that_averages_nothing():
    for strategy in (MFed(), FedAvgPerTask(), FedAvgAll(), FedRep()):
        assert defended(strategy, robust="median").defences.robust == "median"
    with pytest.raises(ValueError, match="defences.clip_norm=1 cannot go with aggregation=local: .* averages no"):
        defended(Local(), clip_norm=1.0, robust="median")


def update(cid: str, enc: float, n: int = 1) -> ClientUpdate:
    return ClientUpdate(cid, "t", n, {"encoder.w": torch.full((2,), enc), "decoders.t.w": torch.full((1,), enc)})


def test_strategy_defences_bound_one_huge_update():
    # Prepare: five honest clients near 1.0 and one sending 1e6
    state = {"global": {"encoder.w": torch.zeros(2)}, "task:t": {"decoders.t.w": torch.zeros(1)}}
    honest = [update(f"c{i}", 1.0 + 0.01 * i) for i in range(5)]
    attacked = [*honest, update("bad", 1e6)]
    plain = aggregate(MFed(), state, honest)["global"]["encoder.w"]
    # Execute / Assert: undefended, the mean moves to ~1.7e5; each defence stays within 0.5 of the honest mean
    assert float(aggregate(MFed(), state, attacked)["global"]["encoder.w"][0]) > 1e5
    for strategy in (
        defended(clip_norm=2.0),
        defended(robust="median"),
        defended(robust="trimmed_mean", trim_fraction=0.17),
    ):
        new = aggregate(strategy, state, attacked)
        assert float((new["global"]["encoder.w"] - plain).abs().max()) < 0.5, strategy
        assert float(new["task:t"]["decoders.t.w"][0]) < 2.0, strategy


def test_robust_rules_ignore_claimed_example_counts():
    state = {"global": {"encoder.w": torch.zeros(2)}, "task:t": {"decoders.t.w": torch.zeros(1)}}
    updates = [update("a", 0.0), update("b", 1.0), update("liar", 9.0, n=10**6)]
    assert aggregate(defended(robust="median"), state, updates)["global"]["encoder.w"].tolist() == [1.0, 1.0]


def test_the_fold_settings_name_the_defences_so_resume_refuses_a_change():
    assert defended(clip_norm=1.0).settings() != Pipeline(MFed()).settings()
    assert "'clip_norm': 1.0" in repr(defended(clip_norm=1.0).settings())
    assert "Median" in repr(defended(robust="median").settings())


def task_update(cid: str, tasks, enc: float) -> ClientUpdate:
    state = {"encoder.w": torch.full((2,), enc), **{f"decoders.{t}.w": torch.full((1,), enc) for t in tasks}}
    return ClientUpdate(cid, tuple(tasks), 1, state)


def test_robust_rules_run_within_each_kind_of_client_then_take_the_median_of_the_kinds():
    # Prepare: 4 seg clients agree on 1.0; one depth client (a minority task) pulls to 5.0
    state = {"global": {"encoder.w": torch.zeros(2)}, **{f"task:{t}": {f"decoders.{t}.w": torch.zeros(1)} for t in "a"}}
    state["task:b"] = {"decoders.b.w": torch.zeros(1)}
    seg = [task_update(f"a-{i}", "a", 1.0) for i in range(4)]
    minority = task_update("b-0", "b", 5.0)
    # Execute
    grouped = aggregate(defended(robust="median"), state, [*seg, minority])["global"]["encoder.w"]
    # Assert: a median over all 5 clients would be 1.0 (the depth client trimmed as an attacker); within the
    # kinds it is 1.0 (a) and 5.0 (b), and the median of those two is their mean, 3.0: b keeps its pull
    assert grouped.tolist() == [3.0, 3.0]


def test_grouped_robust_rules_still_contain_one_client_scaled_by_1e6():
    # Prepare: kind a has 3 clients (one attacker), b, c and a client holding both a and b (its own kind)
    state: dict = {"global": {"encoder.w": torch.zeros(2)}}
    state |= {f"task:{t}": {f"decoders.{t}.w": torch.zeros(1)} for t in "abc"}
    updates = [task_update("a-0", "a", 1.0), task_update("a-1", "a", 1.2), task_update("a-2", "a", 1e6),
               task_update("b-0", "b", 2.0), task_update("c-0", "c", 3.0)]  # fmt: skip
    updates.append(task_update("a+b-0", ("a", "b"), 4.0))
    # Execute
    new = aggregate(defended(robust="median"), state, updates)
    # Assert: kind a's median 1.2 contains the attacker; the kinds' medians (1.2, 2, 3, 4) give (2 + 3) / 2
    assert new["global"]["encoder.w"].tolist() == [2.5, 2.5]
    # task a's decoder: kinds a (median 1.2) and a+b (4.0): the median of two is their mean
    assert new["task:a"]["decoders.a.w"].tolist() == pytest.approx([2.6])
    # a trimmed mean cutting one from each end of kind a's 3 clients keeps its middle one, 1.2, too
    trimmed = aggregate(defended(robust="trimmed_mean", trim_fraction=0.34), state, updates)
    assert trimmed["global"]["encoder.w"].tolist() == [2.5, 2.5]


def test_defences_bound_a_sign_flipped_update_under_mfed_ca():
    # Prepare: tasks t (three clients, one flipping its update and scaling it by 10) and u (three honest)
    model = MultiTaskModel(nn.Linear(2, 2, bias=False), {"t": nn.Linear(2, 1), "u": nn.Linear(2, 1)})
    state = MFedCA().init_state(model)
    start = state["global"]["encoder.weight"]

    def sent(cid, task, step):
        decoder = {k: v + step for k, v in state[f"task:{task}"].items()}
        return ClientUpdate(cid, task, 10, {"encoder.weight": start + step, **decoder})

    honest = [sent(f"{t}{i}", t, 0.1 * (1 + i)) for t in ("t", "u") for i in range(3)]
    attacked = [*honest[:2], sent("flip", "t", -10 * 0.3), *honest[3:]]
    reference = aggregate(MFedCA(), state, honest)["global"]["encoder.weight"]
    # Execute
    moved = {
        name: (aggregate(fold, state, attacked)["global"]["encoder.weight"] - reference).norm().item()
        for name, fold in (
            ("none", MFedCA()),
            ("clip", Pipeline(MFedCA(), Defences(clip_norm=0.5))),
            ("median", Pipeline(MFedCA(), Defences(robust="median"))),
        )
    }
    # Assert: undefended, the flipped client drags the encoder far off; each defence keeps it near the honest run
    honest_step = (reference - start).norm().item()
    assert moved["none"] > 1.5 * honest_step  # 0.84 against an honest step of 0.48
    assert moved["clip"] < moved["none"] / 3 and moved["median"] < moved["none"] / 3  # 0.24 and 0.12
