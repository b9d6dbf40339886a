"""MaT-FL: the grouping against scikit-learn's AgglomerativeClustering, the means by hand, its refusals."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from mfed.aggregation.fold import Pipeline, aggregate
from mfed.aggregation.matfl import MaTFL, cluster, cosine_distances, group_encoders
from mfed.models.multitask import MultiTaskModel
from mfed.types import PARTS, ClientUpdate, LocalStep

HAND = [[1.0, 0.0], [1.1, 0.0], [0.0, 1.0], [0.0, 1.2]]  # fmtl_notes 4.9: groups {0, 1} and {2, 3}
HAND_NEW = [[1.05, 0.0], [1.05, 0.0], [0.0, 1.1], [0.0, 1.1]]


def partition(labels) -> set[frozenset[int]]:
    groups: dict[int, set[int]] = {}
    for i, label in enumerate(labels):
        groups.setdefault(int(label), set()).add(i)
    return {frozenset(g) for g in groups.values()}


def test_the_hand_case_groups_and_averages_as_computed_by_hand():
    encoders = [{"w": torch.tensor(w, dtype=torch.float64)} for w in HAND]
    grouped, soup, labels = group_encoders(encoders, [1.0] * 4, clusters=2)
    assert labels == [0, 0, 1, 1]
    for new, expected in zip(grouped, HAND_NEW, strict=True):
        assert new["w"].tolist() == pytest.approx(expected, abs=1e-12)
    assert soup["w"].tolist() == pytest.approx([0.525, 0.55], abs=1e-12)


@pytest.mark.parametrize("seed", range(12))
def test_the_grouping_is_scikit_learns_average_linkage_on_cosine_distance(seed):
    cluster_module = pytest.importorskip("sklearn.cluster")
    # Prepare: a few clients in latent directions, with noise, so the groups are not trivial
    rng = np.random.default_rng(seed)
    n, dim, k = int(rng.integers(3, 13)), int(rng.integers(2, 40)), int(rng.integers(1, 5))
    centres = rng.normal(size=(3, dim))
    x = centres[rng.integers(0, 3, size=n)] + 0.8 * rng.normal(size=(n, dim))
    # Execute
    ours = cluster(torch.from_numpy(x), k)
    # Assert: the same partition as scikit-learn's (labels may be numbered otherwise)
    if n <= k:
        assert ours == list(range(n))
        return
    theirs = cluster_module.AgglomerativeClustering(n_clusters=k, metric="cosine", linkage="average").fit(x).labels_
    assert partition(ours) == partition(theirs)
    assert ours[0] == 0 and sorted(set(ours)) == list(range(k))


def test_a_round_of_encoders_is_grouped_on_their_deviations_from_the_soup_like_scikit_learn():
    cluster_module = pytest.importorskip("sklearn.cluster")
    # Prepare: six encoders of two tensors (a common offset: the deviation, not the weights, is clustered)
    rng = np.random.default_rng(7)
    encoders = [
        {"a": torch.tensor(5.0 + rng.normal(size=(3, 2))), "b": torch.tensor(rng.normal(size=4))} for _ in range(6)
    ]
    weights = [1.0, 2.0, 1.0, 3.0, 1.0, 2.0]
    # Execute
    grouped, soup, labels = group_encoders(encoders, weights, clusters=3)
    # Assert: deltas from the weighted soup, grouped as scikit-learn does; each client gets its group's weighted mean
    flat = np.stack([np.concatenate([e["a"].numpy().ravel(), e["b"].numpy().ravel()]) for e in encoders])
    w = np.array(weights)
    mean = (w[:, None] * flat).sum(0) / w.sum()
    np.testing.assert_allclose(np.concatenate([soup["a"].numpy().ravel(), soup["b"].numpy().ravel()]), mean)
    theirs = cluster_module.AgglomerativeClustering(n_clusters=3, metric="cosine", linkage="average")
    expected = theirs.fit(flat - mean).labels_
    assert partition(labels) == partition(expected)
    for i, new in enumerate(grouped):
        members = expected == expected[i]
        group_mean = (w[members, None] * flat[members]).sum(0) / w[members].sum()
        np.testing.assert_allclose(np.concatenate([new["a"].numpy().ravel(), new["b"].numpy().ravel()]), group_mean)


def test_a_deviation_of_norm_zero_is_at_cosine_distance_one():
    d = cosine_distances(torch.tensor([[1.0, 0.0], [0.0, 0.0], [-2.0, 0.0]], dtype=torch.float64))
    assert d.tolist() == pytest.approx([1.0, 2.0, 1.0])  # (0, 1), (0, 2), (1, 2)


def test_no_more_clients_than_groups_keeps_each_its_own():
    assert cluster(torch.ones(2, 3), 2) == [0, 1]
    assert cluster(torch.ones(1, 3), 2) == [0]
    assert cluster(torch.tensor([[1.0, 0.0], [2.0, 0.1], [0.0, 1.0]]), 1) == [0, 0, 0]


def encoder_model() -> MultiTaskModel:
    """A 2-vector encoder weight with BatchNorm statistics; a scalar decoder per task."""
    encoder = nn.Sequential(nn.Linear(1, 2, bias=False), nn.BatchNorm1d(2))
    return MultiTaskModel(encoder, {"seg": nn.Linear(2, 1), "depth": nn.Linear(2, 1)})


def update(cid: str, task: str, w: list[float], var: list[float]) -> ClientUpdate:
    state = {
        "encoder.0.weight": torch.tensor(w).reshape(2, 1),
        "encoder.1.weight": torch.ones(2),
        "encoder.1.bias": torch.zeros(2),
        "encoder.1.running_mean": torch.zeros(2),
        "encoder.1.running_var": torch.tensor(var),
        "encoder.1.num_batches_tracked": torch.tensor(4),
    }
    return ClientUpdate(cid, task, 10, state)


def test_the_fold_groups_on_parameters_not_batchnorm_statistics_and_averages_both_within_groups():
    # Prepare: the hand case's weights; running variances that alone would pair 0 with 2 and 1 with 3
    variances = [[100.0, 1.0], [1.0, 100.0], [100.0, 1.0], [1.0, 100.0]]
    pairs = enumerate(zip(HAND, variances, strict=True))
    ups = [update(f"c{i}", "seg" if i % 2 else "depth", w, v) for i, (w, v) in pairs]
    strategy = MaTFL(clusters=2)
    state = strategy.init_state(encoder_model())
    # Execute
    round_ = Pipeline(strategy).round(state, 1)
    for u in ups:
        round_.add(u)
    new, metrics = round_.result()
    # Assert: groups {c0, c1} and {c2, c3}, as the hand case; statistics averaged within each
    for i, expected in enumerate(HAND_NEW):
        personal = new[f"personal:c{i}"]
        assert personal["encoder.0.weight"].ravel().tolist() == pytest.approx(expected, abs=1e-6)
        assert personal["encoder.1.running_var"].tolist() == pytest.approx([50.5, 50.5])
        assert int(personal["encoder.1.num_batches_tracked"]) == 4
    assert new["global"]["encoder.0.weight"].ravel().tolist() == pytest.approx([0.525, 0.55], abs=1e-6)
    assert metrics == {"groups": 2.0, "largest_group": 2.0, "group/c0": 0.0, "group/c1": 0.0, "group/c2": 1.0,
                       "group/c3": 1.0}  # fmt: skip
    assert not any(s.startswith("task:") for s in new)  # decoders are never aggregated


def test_examples_weighting_weights_the_soup_and_the_group_means():
    ups = [update(f"c{i}", "seg", w, [1.0, 1.0]) for i, w in enumerate(HAND)]
    ups = [ClientUpdate(u.client_id, u.tasks, n, u.state) for u, n in zip(ups, (1, 3, 1, 1), strict=True)]
    new = aggregate(MaTFL(weighting="examples"), MaTFL().init_state(encoder_model()), ups)
    assert new["personal:c0"]["encoder.0.weight"].ravel().tolist() == pytest.approx([1.075, 0.0], abs=1e-6)
    assert new["global"]["encoder.0.weight"].ravel().tolist() == pytest.approx([4.3 / 6, 2.2 / 6], abs=1e-6)


def test_clients_send_the_encoder_and_keep_their_decoders():
    assert MaTFL().steps == (LocalStep(train=PARTS, sends=("encoder",), keeps=("decoder",)),)
    assert MaTFL().targets(("seg", "depth")) == [("global", ("encoder.",))]
    with pytest.raises(ValueError, match="aggregation.clusters must be an integer >= 1, got 0"):
        MaTFL(clusters=0)


def test_a_round_on_the_serial_backend_groups_the_encoders_and_scores_the_personalised_model(tiny_cfg):
    # Prepare: one round of four clients, as the driver runs it
    from mfed.run import build

    driver = build(tiny_cfg("task_mix=seg_depth", "aggregation=matfl", "federation.rounds=1"))
    driver.state = driver.strategy.init_state(driver.model)
    driver.backend.start(driver.specs, driver.setup)
    updates = list(driver.backend.fit(driver.client_ids, driver.state, 1, driver.plan(1, driver.client_ids)))
    # Execute
    new = aggregate(driver.fold, driver.state, updates)
    # Assert: the personal encoders are MaT-FL's groups of the four encoders; decoders stayed with the clients
    assert all(not any(k.startswith("decoders.") for k in u.state) for u in updates)
    grouped, _, _ = group_encoders([u.state for u in updates], [1.0] * len(updates), 2)
    for u, encoder in zip(updates, grouped, strict=True):
        for key, value in encoder.items():
            torch.testing.assert_close(new[f"personal:{u.client_id}"][key], value)
    # scored: its group's encoder with its own decoder
    driver.state = new
    assert driver.test_scorers() == {c: [c] for c in driver.client_ids}
    first = updates[0]
    list(driver.backend.evaluate([first.client_id], new, split="val"))
    scored = driver.backend.clients[first.client_id].system.model.state_dict()
    for key, value in {**new[f"personal:{first.client_id}"], **first.private}.items():
        if not key.startswith("weighting."):
            torch.testing.assert_close(scored[key], value)
