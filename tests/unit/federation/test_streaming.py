"""Updates folded in as they arrive give the batch aggregate, bit for bit, and are not kept."""

import dataclasses
import gc
import weakref

import pytest
import torch

from mfed.aggregation.fold import aggregate
from mfed.aggregation.functional import RunningMean, weighted_average
from mfed.federation.sampling import in_order
from mfed.run import build
from mfed.types import ClientFailure, ClientUpdate


class Replay:
    """A backend whose ``fit`` yields fresh copies of recorded updates, in a given order of client ids.

    It keeps no reference to what it yielded: ``alive`` holds weak references to each copy's
    tensors, so a test can see which ones the driver still holds.
    """

    def __init__(self, inner, updates, order):
        self.inner, self.updates, self.order = inner, {u.client_id: u for u in updates}, order
        self.alive: list[tuple[str, weakref.ref]] = []
        self.held_at_yield: list[list[str]] = []

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def fit(self, client_ids, state, round_idx, plan):
        for client in self.order:
            gc.collect()
            self.held_at_yield.append([c for c, ref in self.alive if ref() is not None])
            u = self.updates[client]
            copy = dataclasses.replace(u, state={k: v.clone() for k, v in u.state.items()})
            self.alive.append((client, weakref.ref(next(iter(copy.state.values())))))
            yield copy
            del copy


@pytest.fixture
def recorded(tiny_cfg):
    """A driver before round 1, and its clients' real round-1 updates from the serial backend."""
    driver = build(tiny_cfg("federation.rounds=1", "data.test=null"))
    driver.state = driver.strategy.init_state(driver.model)
    driver.backend.start(driver.specs, driver.setup)
    return driver, list(driver.backend.fit(driver.client_ids, driver.state, 1, driver.plan(1, driver.client_ids)))


@pytest.mark.parametrize("arrival", ["sampled", "reversed", "interleaved"])
def test_folding_in_any_arrival_order_equals_the_batch_aggregate_bit_for_bit(recorded, arrival):
    # Prepare: the six clients' updates arriving in some order
    driver, updates = recorded
    ids = [u.client_id for u in updates]
    order = {"sampled": ids, "reversed": ids[::-1], "interleaved": ids[1::2] + ids[::2]}[arrival]
    initial = driver.state
    driver.backend = Replay(driver.backend, updates, order)
    # Execute
    driver.run_round(1)
    # Assert: the batch aggregate over the updates in sampled order, exactly
    batch = aggregate(driver.fold, initial, updates)
    assert driver.state.keys() == batch.keys()
    for scope, tensors in batch.items():
        for key, value in tensors.items():
            assert torch.equal(driver.state[scope][key], value), f"{scope}/{key}"
    # ... and a float64 example-weighted mean of the encoder computed by hand
    key = "encoder.stages.1.0.0.weight"
    n = torch.tensor([float(u.num_examples) for u in updates], dtype=torch.float64)
    by_hand = sum(w * u.state[key].double() for w, u in zip(n / n.sum(), updates, strict=True))
    torch.testing.assert_close(driver.state["global"][key], by_hand.float(), rtol=1e-6, atol=1e-7)


def test_updates_arriving_in_order_are_released_once_folded_in(recorded):
    # Prepare
    driver, updates = recorded
    ids = [u.client_id for u in updates]
    driver.backend = Replay(driver.backend, updates, ids)
    # Execute
    driver.run_round(1)
    # Assert: when an update is yielded, at most the one before it is still held (the driver's loop variable)
    assert [len(held) for held in driver.backend.held_at_yield] == [0, 1, 1, 1, 1, 1]
    assert driver.backend.held_at_yield[-1] == [ids[-2]]


def test_running_mean_matches_a_hand_computed_weighted_mean_and_checks_layouts():
    mean = RunningMean()
    mean.add({"w": torch.tensor([1.0, 2.0]), "n": torch.tensor(3)}, 1.0, "a")
    mean.add({"w": torch.tensor([5.0, 6.0]), "n": torch.tensor(8)}, 3.0, "b")
    out = mean.value()
    assert out["w"].tolist() == [4.0, 5.0] and out["w"].dtype == torch.float32  # (1*1 + 3*5) / 4
    assert out["n"].item() == 7 and out["n"].dtype == torch.int64  # round((3 + 24) / 4 = 6.75)
    batch = weighted_average([{"w": torch.tensor([1.0, 2.0])}, {"w": torch.tensor([5.0, 6.0])}], [1, 3])
    assert batch["w"].tolist() == [4.0, 5.0]
    with pytest.raises(ValueError, match=r"w has shape \(3,\) in c but \(2,\) in a"):
        mean.add({"w": torch.ones(3), "n": torch.tensor(1)}, 1.0, "c")
    with pytest.raises(ValueError, match="state of d has different keys than a: missing \\['n'\\]"):
        mean.add({"w": torch.ones(2)}, 1.0, "d")
    with pytest.raises(ValueError, match="cannot average zero states"):
        RunningMean().value()


def test_in_order_holds_an_early_result_only_until_the_ones_before_it_came():
    # Prepare: c arrives first, then a note for b, a, a stranger, b, and a second result of a
    def out(client, kind=None):
        return ClientFailure(client, kind, "") if kind else ClientUpdate(client, "t", 1, {})

    arrivals = [out("c"), out("b", "restarted"), out("a"), out("x"), out("b"), out("a")]
    released: list[tuple[str, str]] = []

    def tagged():
        for item in arrivals:
            released.append(("arrived", item.client_id))
            yield item

    # Execute
    for item in in_order(tagged(), ["a", "b", "c", "d"]):
        released.append(("out", item.client_id))
    # Assert: c waits for a and b; notes, strangers and second results pass at once; d never came
    assert released == [
        ("arrived", "c"), ("arrived", "b"), ("out", "b"), ("arrived", "a"), ("out", "a"), ("arrived", "x"),
        ("out", "x"), ("arrived", "b"), ("out", "b"), ("out", "c"), ("arrived", "a"), ("out", "a"),
    ]  # fmt: skip
