import dataclasses

import pytest
import torch
from torch import nn

from mfed.aggregation import Ditto, FedAvgAll, FedAvgPerTask, FedProx, FedRep, Local, MFed
from mfed.aggregation.functional import select
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


def test_fedprox_averages_like_fedavg_per_task_and_pulls_the_whole_model():
    strategy = FedProx(mu=0.5)
    new = strategy.aggregate(strategy.init_state(tiny_model()), UPDATES)
    assert torch.allclose(new["task:seg"]["encoder.weight"], torch.full((2, 2), 3.0))  # (1*0 + 3*4) / 4
    assert torch.allclose(new["task:seg"]["decoders.seg.bias"], torch.full((3,), 17.5))  # (1*10 + 3*20) / 4
    assert torch.allclose(new["task:depth"]["encoder.weight"], torch.full((2, 2), 8.0))
    (step,) = strategy.steps
    assert dict(step.prox) == {"encoder": 0.5, "decoder": 0.5} and step.sends == ("encoder", "decoder")


def test_fedrep_averages_the_encoder_over_every_task_and_keeps_each_decoder_private():
    strategy = FedRep()
    state = strategy.init_state(tiny_model())
    assert set(state) == {"global"}
    sent = [
        dataclasses.replace(u, state=select(u.state, ["encoder."]), private=select(u.state, [f"decoders.{u.task}."]))
        for u in UPDATES
    ]
    new = strategy.aggregate(state, sent)
    assert torch.allclose(new["global"]["encoder.weight"], torch.full((2, 2), 5.5))  # (0 + 12 + 32) / 8
    assert set(new) == {"global", "client:s0", "client:s1", "client:d0"}  # no task scope: decoders never mix
    assert torch.equal(new["client:s1"]["decoders.seg.bias"], torch.full((3,), 20.0))
    assert strategy.uploads == ("encoder",) and strategy.keeps == ("decoder",)


def test_ditto_averages_the_global_models_per_task_and_keeps_the_personal_ones():
    strategy = Ditto(lam=0.2)
    personal = [dataclasses.replace(u, private={k: v + 100 for k, v in u.state.items()}) for u in UPDATES]
    new = strategy.aggregate(strategy.init_state(tiny_model()), personal)
    assert torch.allclose(new["task:seg"]["encoder.weight"], torch.full((2, 2), 3.0))  # global models: FedAvg per task
    assert torch.equal(new["client:s0"]["encoder.weight"], torch.full((2, 2), 100.0))  # personal: untouched
    federated, own = strategy.steps
    assert (federated.start, federated.sends, federated.keeps) == ("shared", ("encoder", "decoder"), ())
    assert (own.start, own.sends, own.keeps, own.name) == ("own", (), ("encoder", "decoder"), "personal")
    assert dict(own.prox) == {"encoder": 0.2, "decoder": 0.2}


def test_mfed_with_a_frozen_encoder_trains_and_averages_only_decoders():
    strategy = MFed(freeze_encoder=True, name="mfed_frozen_encoder")
    state = strategy.init_state(tiny_model())
    sent = [dataclasses.replace(u, state=select(u.state, [f"decoders.{u.task}."])) for u in UPDATES]
    new = strategy.aggregate(state, sent)
    assert new["global"] is state["global"]  # the initial encoder, never moved
    assert torch.allclose(new["task:seg"]["decoders.seg.bias"], torch.full((3,), 17.5))
    (step,) = strategy.steps
    assert step.train == step.sends == ("decoder",) and strategy.name == "mfed_frozen_encoder"
    assert "freeze_encoder=True" in repr(strategy)  # a resume with the encoder unfrozen is refused


def test_a_strategy_name_must_be_a_plain_word():
    with pytest.raises(ValueError, match="aggregation.name must be letters, digits, _ or -, got 'a b'"):
        MFed(name="a b")


def test_fedavg_all_averages_the_shared_decoder_over_every_task_and_heads_within_each():
    # Prepare: decoders with a shared body (same shape for both tasks) and task-sized heads
    model = MultiTaskModel(nn.Linear(2, 2), {"seg": nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 3)),
                                             "depth": nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 1))})  # fmt: skip
    strategy = FedAvgAll()
    state = strategy.init_state(model)
    # every task's shared body starts as one soup; heads are their own
    assert torch.equal(state["task:seg"]["decoders.seg.0.weight"], state["task:depth"]["decoders.depth.0.weight"])

    def sent(cid, task, n, value):
        return ClientUpdate(cid, task, n, {k: torch.full_like(v, value) for k, v in state[f"task:{task}"].items()}
                            | {k: torch.full_like(v, value) for k, v in state["global"].items()})  # fmt: skip

    updates = [sent("s0", "seg", 1, 0.0), sent("s1", "seg", 3, 4.0), sent("d0", "depth", 4, 8.0)]
    # Execute
    new = strategy.aggregate(state, updates)
    # Assert: encoder and shared body over everyone (1*0 + 3*4 + 4*8) / 8 = 5.5, heads per task
    assert torch.allclose(new["global"]["encoder.weight"], torch.full((2, 2), 5.5))
    for task in ("seg", "depth"):
        assert torch.allclose(new[f"task:{task}"][f"decoders.{task}.0.bias"], torch.full((2,), 5.5))
    assert torch.allclose(new["task:seg"]["decoders.seg.1.weight"], torch.full((3, 2), 3.0))  # (0 + 12) / 4
    assert torch.allclose(new["task:depth"]["decoders.depth.1.weight"], torch.full((1, 2), 8.0))
    assert set(new) == {"global", "task:seg", "task:depth"}


def test_fedavg_all_refuses_decoders_it_cannot_mix_naming_the_tasks():
    model = MultiTaskModel(nn.Linear(2, 2), {"seg": nn.Linear(2, 3), "depth": nn.Sequential(nn.Linear(2, 1))})
    with pytest.raises(ValueError, match="the decoders of tasks 'depth' and 'seg' have different parameters"):
        FedAvgAll().init_state(model)
