import dataclasses

import pytest
import torch
from torch import nn

from mfed.aggregation import Ditto, FedAvgAll, FedAvgPerTask, FedProx, FedRep, Local, MFed
from mfed.aggregation.defences import Defences
from mfed.aggregation.fold import Pipeline, aggregate
from mfed.aggregation.functional import merge_scopes, select
from mfed.models.multitask import MultiTaskModel
from mfed.types import ClientSpec, ClientUpdate, LocalStep


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
    new = aggregate(strategy, state, UPDATES)
    # Assert: encoder over everyone (1*0 + 3*4 + 4*8) / 8 = 5.5
    assert torch.allclose(new["global"]["encoder.weight"], torch.full((2, 2), 5.5))
    # seg decoder over seg clients only: (1*10 + 3*20) / 4 = 17.5; depth over its one client
    assert torch.allclose(new["task:seg"]["decoders.seg.bias"], torch.full((3,), 17.5))
    assert torch.allclose(new["task:depth"]["decoders.depth.weight"], torch.full((1, 2), -1.0))
    assert set(new["global"]) == {"encoder.weight", "encoder.bias"}


def test_mfed_uniform_weighting():
    new = aggregate(MFed(weighting="uniform"), MFed().init_state(tiny_model()), UPDATES)
    assert torch.allclose(new["global"]["encoder.bias"], torch.full((2,), 4.0))  # (0 + 4 + 8) / 3


def test_mfed_task_without_participants_keeps_its_decoder():
    strategy = MFed()
    state = strategy.init_state(tiny_model())
    new = aggregate(strategy, state, UPDATES[:2])
    assert new["task:depth"] is state["task:depth"]


def test_mfed_rejects_negative_mu():
    with pytest.raises(ValueError, match="aggregation.mu must be >= 0, got -1"):
        MFed(mu=-1)


def test_fedavg_per_task_never_mixes_tasks():
    strategy = FedAvgPerTask()
    new = aggregate(strategy, strategy.init_state(tiny_model()), UPDATES)
    # seg's encoder is the seg clients' mean (1*0 + 3*4)/4 = 3; depth's is its own client's
    assert torch.allclose(new["task:seg"]["encoder.weight"], torch.full((2, 2), 3.0))
    assert torch.allclose(new["task:depth"]["encoder.weight"], torch.full((2, 2), 8.0))
    assert "global" not in new


def test_local_uploads_nothing_and_holds_each_clients_model_apart():
    strategy = Local()
    assert strategy.init_state(tiny_model()) == {}
    private = [dataclasses.replace(u, state={}, private=u.state) for u in UPDATES]
    new = aggregate(strategy, {}, private)
    assert set(new) == {"client:s0", "client:s1", "client:d0"}
    for u in UPDATES:  # each client's own tensors, untouched by the others'
        assert all(torch.equal(new[f"client:{u.client_id}"][k], v) for k, v in u.state.items())
    (step,) = strategy.steps
    assert step.sends == () and step.keeps == ("encoder", "decoder")


def test_fedprox_averages_like_fedavg_per_task_and_pulls_the_whole_model():
    strategy = FedProx(mu=0.5)
    new = aggregate(strategy, strategy.init_state(tiny_model()), UPDATES)
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
        dataclasses.replace(
            u, state=select(u.state, ["encoder."]), private=select(u.state, [f"decoders.{u.tasks[0]}."])
        )
        for u in UPDATES
    ]
    new = aggregate(strategy, state, sent)
    assert torch.allclose(new["global"]["encoder.weight"], torch.full((2, 2), 5.5))  # (0 + 12 + 32) / 8
    assert set(new) == {"global", "client:s0", "client:s1", "client:d0"}  # no task scope: decoders never mix
    assert torch.equal(new["client:s1"]["decoders.seg.bias"], torch.full((3,), 20.0))
    (step,) = strategy.steps
    assert step.sends == ("encoder",) and step.keeps == ("decoder",)


def test_ditto_averages_the_global_models_per_task_and_keeps_the_personal_ones():
    strategy = Ditto(lam=0.2)
    personal = [dataclasses.replace(u, private={k: v + 100 for k, v in u.state.items()}) for u in UPDATES]
    new = aggregate(strategy, strategy.init_state(tiny_model()), personal)
    assert torch.allclose(new["task:seg"]["encoder.weight"], torch.full((2, 2), 3.0))  # global models: FedAvg per task
    assert torch.equal(new["client:s0"]["encoder.weight"], torch.full((2, 2), 100.0))  # personal: untouched
    federated, own = strategy.steps
    assert (federated.start, federated.sends, federated.keeps) == ("shared", ("encoder", "decoder"), ())
    assert (own.start, own.sends, own.keeps, own.name) == ("own", (), ("encoder", "decoder"), "personal")
    assert dict(own.prox) == {"encoder": 0.2, "decoder": 0.2}


def test_mfed_with_a_frozen_encoder_trains_and_averages_only_decoders():
    strategy = MFed(freeze_encoder=True, name="mfed_frozen_encoder")
    state = strategy.init_state(tiny_model())
    sent = [dataclasses.replace(u, state=select(u.state, [f"decoders.{u.tasks[0]}."])) for u in UPDATES]
    new = aggregate(strategy, state, sent)
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
    new = aggregate(strategy, state, updates)
    # Assert: encoder and shared body over everyone (1*0 + 3*4 + 4*8) / 8 = 5.5, heads per task
    assert torch.allclose(new["global"]["encoder.weight"], torch.full((2, 2), 5.5))
    for task in ("seg", "depth"):
        assert torch.allclose(new[f"task:{task}"][f"decoders.{task}.0.bias"], torch.full((2,), 5.5))
    assert torch.allclose(new["task:seg"]["decoders.seg.1.weight"], torch.full((3, 2), 3.0))  # (0 + 12) / 4
    assert torch.allclose(new["task:depth"]["decoders.depth.1.weight"], torch.full((1, 2), 8.0))
    assert set(new) == {"global", "task:seg", "task:depth"}


def test_fedavg_all_mixes_decoders_only_within_one_architecture():
    # Prepare: seg and depth share a decoder architecture; edges names a lighter one of its own
    model = MultiTaskModel(nn.Linear(2, 2), {"seg": nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 3)),
                                             "depth": nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 1)),
                                             "edges": nn.Linear(2, 1)})  # fmt: skip
    strategy = FedAvgAll()
    state = strategy.init_state(model)
    full = {k: v for scope in state.values() for k, v in scope.items()}

    def sent(cid, tasks, n, value):
        keys = [k for k in full if k.startswith(("encoder.", *(f"decoders.{t}." for t in tasks)))]
        return ClientUpdate(cid, tuple(tasks), n, {k: torch.full_like(full[k], value) for k in keys})

    # a client holding seg and edges: its encoder counts once, each decoder joins its own architecture's fold
    updates = [sent("s0", ["seg"], 1, 0.0), sent("d0", ["depth"], 2, 6.0), sent("se0", ["seg", "edges"], 1, 3.0),
               sent("e0", ["edges"], 3, 7.0)]  # fmt: skip
    # Execute
    new = aggregate(strategy, state, updates)
    # Assert: encoder over everyone (0 + 12 + 3 + 21) / 7; the shared body over seg and depth decoders (0 + 12 + 3) / 4
    assert torch.allclose(new["global"]["encoder.weight"], torch.full((2, 2), 36 / 7))
    for task in ("seg", "depth"):
        assert torch.allclose(new[f"task:{task}"][f"decoders.{task}.0.weight"], torch.full((2, 2), 15 / 4))
    assert torch.allclose(new["task:seg"]["decoders.seg.1.weight"], torch.full((3, 2), 1.5))  # heads: (0 + 3) / 2
    # edges' decoder matches no other task's: averaged within edges only, (3 + 21) / 4
    assert torch.allclose(new["task:edges"]["decoders.edges.weight"], torch.full((1, 2), 6.0))


def mixed_update(cid, tasks, n, enc, dec):
    state = {"encoder.weight": torch.full((2, 2), enc), "encoder.bias": torch.full((2,), enc)}
    for task in tasks:
        out = 3 if task == "seg" else 1
        state[f"decoders.{task}.weight"] = torch.full((out, 2), dec[task])
        state[f"decoders.{task}.bias"] = torch.full((out,), dec[task])
    return ClientUpdate(cid, tuple(tasks), n, state)


def test_mfed_over_mixed_clients_averages_the_encoder_once_per_client_and_each_decoder_over_its_holders():
    # Prepare: a client holding both tasks beside one client of each
    strategy = MFed()
    updates = [
        mixed_update("seg-0", ["seg"], 2, enc=1.0, dec={"seg": 10.0}),
        mixed_update("depth-0", ["depth"], 1, enc=4.0, dec={"depth": -2.0}),
        mixed_update("seg+depth-0", ["seg", "depth"], 5, enc=7.0, dec={"seg": 20.0, "depth": 4.0}),
    ]
    # Execute
    new = aggregate(strategy, strategy.init_state(tiny_model()), updates)
    # Assert: encoder (2*1 + 1*4 + 5*7) / 8, the two-task client weighted by its 5 examples once
    assert torch.allclose(new["global"]["encoder.weight"], torch.full((2, 2), 41 / 8))
    # seg decoder over seg-0 and seg+depth-0: (2*10 + 5*20) / 7; depth over depth-0 and seg+depth-0: (1*-2 + 5*4) / 6
    assert torch.allclose(new["task:seg"]["decoders.seg.bias"], torch.full((3,), 120 / 7))
    assert torch.allclose(new["task:depth"]["decoders.depth.weight"], torch.full((1, 2), 3.0))
    assert strategy.targets(("seg", "depth")) == [
        ("global", ("encoder.",)),
        ("task:seg", ("decoders.seg.",)),
        ("task:depth", ("decoders.depth.",)),
    ]


def test_fedavg_per_task_folds_a_two_task_clients_encoder_into_each_of_its_tasks():
    strategy = FedAvgPerTask()
    updates = [
        mixed_update("seg-0", ["seg"], 1, enc=1.0, dec={"seg": 0.0}),
        mixed_update("seg+depth-0", ["seg", "depth"], 3, enc=5.0, dec={"seg": 0.0, "depth": 2.0}),
    ]
    new = aggregate(strategy, strategy.init_state(tiny_model()), updates)
    assert torch.allclose(new["task:seg"]["encoder.weight"], torch.full((2, 2), 4.0))  # (1 + 15) / 4
    assert torch.allclose(new["task:depth"]["encoder.weight"], torch.full((2, 2), 5.0))  # its only client


def test_a_client_holding_two_tasks_starts_from_the_mean_of_its_tasks_shared_copies():
    state = {"task:a": {"encoder.w": torch.tensor([1.0, 3.0]), "decoders.a.w": torch.ones(1)},
             "task:b": {"encoder.w": torch.tensor([3.0, 7.0]), "decoders.b.w": torch.zeros(1)}}  # fmt: skip
    merged = merge_scopes(state, ["global", "task:a", "task:b", "personal:x"])
    assert merged["encoder.w"].tolist() == [2.0, 5.0]
    assert merged["decoders.a.w"] is state["task:a"]["decoders.a.w"]  # a key in one scope: taken as it is


def test_a_strategy_configures_each_round_and_aggregates_with_the_round_its_generator_and_metrics():
    # A strategy in one small class: local epochs that grow with the round, plus a seeded coin
    class Growing(MFed):
        def configure_round(self, round_idx, state, clients, rng):
            extra = int(torch.randint(0, 2, (), generator=rng))
            return {c.client_id: (LocalStep(sends=("encoder", "decoder"), epochs=round_idx + extra),) for c in clients}

    specs = [ClientSpec("seg-0", "seg", (0,), (1,), 0)]
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    plan = Growing().configure_round(2, {}, specs, g1)
    assert plan["seg-0"][0].epochs in (2, 3) and plan == Growing().configure_round(2, {}, specs, g2)
    fold = Pipeline(MFed(), Defences(clip_norm=1e-3)).round(MFed().init_state(tiny_model()), 4, g1)
    for u in UPDATES:
        fold.add(u)
    state, metrics = fold.result()
    assert fold.ctx.round == 4 and metrics == {"clipped": 6.0}  # 3 encoders and 3 decoders moved further than 1e-3
