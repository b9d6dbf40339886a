import numpy as np
import pytest
import torch
from scipy import stats

from mfed.aggregation import FedAvgPerTask, MFed
from mfed.aggregation.robust import clip_update, coordinate_median, trimmed_mean, update_norm
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


def test_bad_defence_settings_name_the_field():
    with pytest.raises(ValueError, match=r"aggregation.trim_fraction must lie in \[0, 0.5\), got 0.5"):
        MFed(robust="trimmed_mean", trim_fraction=0.5)
    with pytest.raises(ValueError, match="aggregation.robust must be null or one of"):
        MFed(robust="mean")
    with pytest.raises(ValueError, match=r"aggregation.clip_norm must be > 0 or null \(off\), got 0"):
        FedAvgPerTask(clip_norm=0)


def update(cid: str, enc: float, n: int = 1) -> ClientUpdate:
    return ClientUpdate(cid, "t", n, {"encoder.w": torch.full((2,), enc), "decoders.t.w": torch.full((1,), enc)})


def test_strategy_defences_bound_one_huge_update():
    # Prepare: five honest clients near 1.0 and one sending 1e6
    state = {"global": {"encoder.w": torch.zeros(2)}, "task:t": {"decoders.t.w": torch.zeros(1)}}
    honest = [update(f"c{i}", 1.0 + 0.01 * i) for i in range(5)]
    attacked = [*honest, update("bad", 1e6)]
    plain = MFed().aggregate(state, honest)["global"]["encoder.w"]
    # Execute / Assert: undefended, the mean moves to ~1.7e5; each defence stays within 0.5 of the honest mean
    assert float(MFed().aggregate(state, attacked)["global"]["encoder.w"][0]) > 1e5
    for strategy in (MFed(clip_norm=2.0), MFed(robust="median"), MFed(robust="trimmed_mean", trim_fraction=0.17)):
        defended = strategy.aggregate(state, attacked)
        assert float((defended["global"]["encoder.w"] - plain).abs().max()) < 0.5, strategy
        assert float(defended["task:t"]["decoders.t.w"][0]) < 2.0, strategy


def test_robust_rules_ignore_claimed_example_counts():
    state = {"global": {"encoder.w": torch.zeros(2)}, "task:t": {"decoders.t.w": torch.zeros(1)}}
    updates = [update("a", 0.0), update("b", 1.0), update("liar", 9.0, n=10**6)]
    assert MFed(robust="median").aggregate(state, updates)["global"]["encoder.w"].tolist() == [1.0, 1.0]


def test_repr_names_the_defences_so_resume_refuses_a_change():
    assert repr(MFed(clip_norm=1.0)) != repr(MFed())
    assert "robust='median'" in repr(MFed(robust="median"))
