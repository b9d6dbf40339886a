"""Update norms and the task-pair cosine of encoder updates, against hand computations."""

import math

import pytest
import torch

from mfed.federation.summary import UpdateTally
from mfed.run import build
from mfed.types import ClientUpdate

STATE = {
    "global": {"encoder.w": torch.tensor([0.0, 0.0]), "encoder.bn.num_batches_tracked": torch.tensor(5)},
    "task:a": {"decoders.a.w": torch.tensor([1.0])},
    "task:b": {"decoders.b.w": torch.tensor([2.0])},
}


def update(client, task, encoder, decoder, n):
    state = {"encoder.w": torch.tensor(encoder), f"decoders.{task}.w": torch.tensor([decoder])}
    state["encoder.bn.num_batches_tracked"] = torch.tensor(9)  # an integer buffer: not an update
    return ClientUpdate(client, task, n, state, {"loss": 1.0}, 0)


def test_norms_and_cosines_by_hand():
    tally = UpdateTally(STATE)
    tally.add(update("a-0", "a", [1.0, 0.0], 3.0, 1))  # encoder moved (1, 0), decoder +2
    tally.add(update("b-0", "b", [0.0, 2.0], 2.0, 1))  # encoder (0, 2), decoder unchanged
    tally.add(update("b-1", "b", [2.0, 0.0], 1.0, 3))  # encoder (2, 0), decoder -1
    row = tally.row()
    assert row["client/a-0/update_norm"] == pytest.approx(math.sqrt(1 + 4))
    assert row["client/b-1/update_norm"] == pytest.approx(math.sqrt(4 + 1))
    assert row["diag/b/update_norm"] == pytest.approx((2.0 + math.sqrt(5)) / 2)
    # task b's mean encoder update, weighted by examples: ((0, 2) * 1 + (2, 0) * 3) / 4 = (1.5, 0.5)
    assert row["diag/cos/a~b"] == pytest.approx(1.5 / math.sqrt(1.5**2 + 0.5**2))


def test_opposite_tasks_and_clients_that_send_nothing():
    tally = UpdateTally(STATE)
    tally.add(update("a-0", "a", [1.0, 1.0], 1.0, 2))
    tally.add(update("b-0", "b", [-2.0, -2.0], 2.0, 2))
    tally.add(ClientUpdate("a-1", "a", 4, {}, {"loss": 1.0}, 0))  # Local: sends nothing
    row = tally.row()
    assert row["diag/cos/a~b"] == pytest.approx(-1.0)
    assert "client/a-1/update_norm" not in row


def test_a_run_logs_them_every_round(tiny_cfg):
    history = build(tiny_cfg("federation.rounds=1", "data.test=null")).run()
    row = history[0]
    assert {"diag/cos/semseg~depth", "diag/cos/semseg~edges", "diag/cos/depth~edges"} <= set(row)
    assert all(-1 <= row[k] <= 1 for k in row if k.startswith("diag/cos/"))
    assert all(row[f"client/{c}/update_norm"] > 0 for c in ("semseg-0", "depth-1", "edges-0"))
