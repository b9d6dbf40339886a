import dataclasses

import pytest
import torch
from torch import nn

from mfed.aggregation import FedAvgPerTask, Local, MFed
from mfed.models.multitask import MultiTaskModel
from mfed.types import ClientUpdate


def tiny_model() -> MultiTaskModel:
    return MultiTaskModel(nn.Linear(2, 2), {"seg": nn.Linear(2, 3), "depth": nn.Linear(2, 1)})


def update(cid: str, task: str, n: int, enc: float, dec: float) -> ClientUpdate:
    out = 3 if task == "seg" else 1
    state = {
        "encoder.weight": torch.full((2, 2), enc), "encoder.bias": torch.full((2,), enc),
        f"decoders.{task}.weight": torch.full((out, 2), dec), f"decoders.{task}.bias": torch.full((out,), dec),
    }  # fmt: skip
    return ClientUpdate(cid, task, n, state)


UPDATES = [
    update("s0", "seg", 1, enc=0.0, dec=10.0),
    update("s1", "seg", 3, enc=4.0, dec=20.0),
    update("d0", "depth", 4, enc=8.0, dec=-1.0),
]


def test_mfed_averages_encoder_over_all_clients_and_decoders_per_task():
    # Prepare
    strategy = MFed(mu=0.1)
    state = strategy.init_state(tiny_model())
    # Execute
    new = strategy.aggregate(state, UPDATES)
    # Assert: encoder over everyone (1*0 + 3*4 + 4*8) / 8 = 5.5
    assert torch.allclose(new["global"]["encoder.weight"], torch.full((2, 2), 5.5))
    # seg decoder over seg clients only: (1*10 + 3*20) / 4 = 17.5; depth over its one client
    assert torch.allclose(new["task:seg"]["decoders.seg.bias"], torch.full((3,), 17.5))
    assert torch.allclose(new["task:depth"]["decoders.depth.weight"], torch.full((1, 2), -1.0))
    assert set(new["global"]) == {"encoder.weight", "encoder.bias"}


def test_mfed_uniform_weighting():
    new = MFed(weighting="uniform").aggregate(MFed().init_state(tiny_model()), UPDATES)
    assert torch.allclose(new["global"]["encoder.bias"], torch.full((2,), 4.0))  # (0 + 4 + 8) / 3


def test_mfed_task_without_participants_keeps_its_decoder():
    strategy = MFed()
    state = strategy.init_state(tiny_model())
    new = strategy.aggregate(state, UPDATES[:2])
    assert new["task:depth"] is state["task:depth"]


def test_mfed_rejects_negative_mu():
    with pytest.raises(ValueError, match="aggregation.mu must be >= 0, got -1"):
        MFed(mu=-1)


def test_fedavg_per_task_never_mixes_tasks():
    strategy = FedAvgPerTask()
    new = strategy.aggregate(strategy.init_state(tiny_model()), UPDATES)
    # seg's encoder is the seg clients' mean (1*0 + 3*4)/4 = 3; depth's is its own client's
    assert torch.allclose(new["task:seg"]["encoder.weight"], torch.full((2, 2), 3.0))
    assert torch.allclose(new["task:depth"]["encoder.weight"], torch.full((2, 2), 8.0))
    assert "global" not in new


def test_local_uploads_nothing_and_holds_each_clients_model_apart():
    strategy = Local()
    assert strategy.init_state(tiny_model()) == {}
    private = [dataclasses.replace(u, state={}, private=u.state) for u in UPDATES]
    new = strategy.aggregate({}, private)
    assert set(new) == {"client:s0", "client:s1", "client:d0"}
    for u in UPDATES:  # each client's own tensors, untouched by the others'
        assert all(torch.equal(new[f"client:{u.client_id}"][k], v) for k, v in u.state.items())
    assert strategy.uploads == () and strategy.keeps == ("encoder", "decoder")
