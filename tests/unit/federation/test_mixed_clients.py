"""Clients holding several tasks beside single-task ones: losses, aggregation, resume, ids, errors."""

import json
from pathlib import Path

import pytest
import torch

from mfed.aggregation.contract import Declaration
from mfed.aggregation.mfed import MFed
from mfed.aggregation.stages import ServerStep
from mfed.federation.summary import TrainTally
from mfed.models.decoder import ConvDecoder
from mfed.models.encoder import ConvEncoder
from mfed.models.multitask import ModelFactory
from mfed.run import build, run, start
from mfed.systems.module import TaskSystem
from mfed.systems.regularisers import proximal_term
from mfed.tasks.depth import Depth
from mfed.tasks.semseg import SemanticSegmentation
from mfed.types import ClientUpdate, ServerState, server_scope

# Two clients holding all three tasks beside one client of each task (configs/federation/hetero.yaml)
HETERO = ("federation=hetero", "data.pool.length=60")


def states_equal(a: ServerState, b: ServerState) -> bool:
    return a.keys() == b.keys() and all(
        a[s].keys() == b[s].keys() and all(torch.equal(a[s][k], b[s][k]) for k in a[s]) for s in a
    )


def test_a_hetero_federation_runs_and_logs_per_client_and_task(tiny_cfg):
    # Execute
    cfg = tiny_cfg(*HETERO)
    driver = build(cfg)
    history = start(driver, cfg).run()
    # Assert: every client and task is keyed by both; the three-task client reports all three
    ids = [s.client_id for s in driver.specs]
    assert ids == ["semseg+depth+edges-0", "semseg+depth+edges-1", "semseg-0", "depth-0", "edges-0"]
    last = history[-1]
    for task, metric in (("semseg", "mIoU"), ("depth", "rmse"), ("edges", "odsF")):
        assert f"client/semseg+depth+edges-0/{task}/{metric}" in last
        assert f"client/semseg+depth+edges-0/{task}/test_{metric}" in last
        assert f"train/{task}/task_loss" in last
    assert "client/semseg-0/depth/rmse" not in last
    # the two three-task clients hold one model (M-Fed): the test set is scored once for both
    assert last["client/semseg+depth+edges-0/semseg/test_mIoU"] == last["client/semseg+depth+edges-1/semseg/test_mIoU"]
    assert "diag/cos/semseg+depth+edges~semseg" in last


def test_clients_per_task_is_the_shorthand_of_single_task_groups(tiny_cfg):
    # Prepare: today's federation, and the same one written as groups
    groups = "federation.groups=[{tasks:[semseg],count:2},{tasks:[depth],count:2},{tasks:[edges],count:2}]"
    short = build(tiny_cfg())
    spelled = build(tiny_cfg("federation.clients_per_task=null", groups))
    # Assert: the same ids, shards and seeds as ever (<task>-<i>, task-major), so the same results
    assert [s.client_id for s in short.specs] == [f"{t}-{i}" for t in ("semseg", "depth", "edges") for i in (0, 1)]
    assert short.specs == spelled.specs


def test_a_multi_task_clients_loss_and_gradient_are_its_tasks_weighted_sum():
    # Prepare: a client holding semseg and depth, with a proximal term on its decoders
    tasks = [SemanticSegmentation(num_classes=3, loss_weight=2.0), Depth(loss_weight=0.5)]
    model = ModelFactory(lambda: ConvEncoder(1, (4,), norm="none"), ConvDecoder, seed=0)(tasks)
    system = TaskSystem(model, tasks, lambda params: torch.optim.SGD(params, lr=0.1))
    reference = {k: v + 0.1 for k, v in model.decoders.named_parameters()}
    system.configure_step(("encoder", "decoder"), {"decoder": (0.3, reference)})
    gen = torch.Generator().manual_seed(0)
    batch = {"image": torch.rand(2, 1, 8, 8, generator=gen), "semseg": torch.randint(0, 3, (2, 8, 8), generator=gen),
             "depth": torch.rand(2, 1, 8, 8, generator=gen)}  # fmt: skip
    # Execute
    loss = system.training_step(batch, 0)
    system.backward(loss)
    got = {n: p.grad.clone() for n, p in model.named_parameters()}
    # Assert: against the tasks computed one by one
    model.zero_grad()
    image = batch["image"]
    seg = tasks[0].loss(model(image, "semseg"), batch["semseg"])
    depth = tasks[1].loss(model(image, "depth"), batch["depth"])
    prox = proximal_term(model.decoders.named_parameters(), reference, 0.3)
    expected = 2.0 * seg + 0.5 * depth + prox
    torch.testing.assert_close(loss, expected)
    expected.backward()
    for name, param in model.named_parameters():
        torch.testing.assert_close(got[name], param.grad, msg=name)
    means = system.train_epoch_means()
    assert set(means) == {"loss", "reg", "semseg/task_loss", "depth/task_loss", "semseg/weight", "depth/weight"}
    assert means["semseg/weight"] == means["depth/weight"] == 1.0  # equal weighting
    assert means["semseg/task_loss"] == pytest.approx(float(seg))


def test_uncertainty_weights_are_learnt_kept_privately_and_carried_into_the_next_round(tiny_cfg):
    # Execute
    cfg = tiny_cfg(*HETERO, "weighting=uncertainty", "federation.rounds=1")
    driver = build(cfg)
    start(driver, cfg).run()
    # Assert: each client's log-variances moved from 0 and live in its own scope (never averaged, never sent up)
    log_var = driver.state["client:semseg+depth+edges-0"]["weighting.log_var"]
    assert log_var.shape == (3,) and bool((log_var != 0).all())
    assert "weighting.log_var" in driver.state["client:semseg-0"]
    assert not any(k.startswith("weighting") for scope in ("global", "task:semseg") for k in driver.state[scope])
    history = json.loads((Path(driver.info["out_dir"]) / "history.json").read_text())
    assert history[0]["train/depth/weight"] != pytest.approx(0.5)  # 1 / (2 e^s) with s moved off 0


def test_dwa_history_is_kept_privately_and_weighs_the_next_rounds_first_epoch(tiny_cfg):
    # Execute: two rounds of two local epochs: weights 1 in round 1, DWA's from round 2's first epoch on
    cfg = tiny_cfg(*HETERO, "weighting=dwa", "federation.local_epochs=2")
    driver = build(cfg)
    start(driver, cfg).run()
    # Assert: the history lives in each client's own scope, four epochs long; the logged weights moved
    own = driver.state["client:semseg+depth+edges-0"]
    assert int(own["weighting.epochs"]) == 4 and own["weighting.loss_history"].shape == (2, 3)
    assert float(own["weighting.weight"].sum()) == pytest.approx(3.0)
    assert int(driver.state["client:semseg-0"]["weighting.epochs"]) == 4
    assert not any(k.startswith("weighting") for scope in ("global", "task:semseg") for k in driver.state[scope])
    history = json.loads((Path(driver.info["out_dir"]) / "history.json").read_text())
    assert history[0]["train/depth/weight"] == pytest.approx(1.0)
    assert history[1]["train/depth/weight"] != pytest.approx(1.0)  # the three-task clients' weights differ from 1
    assert history[1]["train/depth/weight"] > 0


def test_a_hetero_run_killed_after_round_1_and_resumed_ends_bit_exact(tiny_cfg, tmp_path):
    # Prepare: the uninterrupted run (per-task FedAvg: a three-task client starts from its tasks' mean encoder)
    options = (*HETERO, "aggregation=fedavg", "weighting=uncertainty")
    straight = tiny_cfg(*options, f"out_dir={tmp_path / 'straight'}")
    whole = build(straight)
    start(whole, straight).run()
    # Execute: one round, then a resume to two
    first = tiny_cfg(*options, "federation.rounds=1", f"out_dir={tmp_path / 'cut'}")
    run(first)
    again = tiny_cfg(*options, f"resume={tmp_path / 'cut'}", "out_dir=null")
    resumed = build(again)
    start(resumed, again).run()
    # Assert
    assert states_equal(resumed.state, whole.state)
    assert resumed.history[-1]["test/semseg/mIoU"] == whole.history[-1]["test/semseg/mIoU"]


def test_resuming_with_another_decoder_for_a_task_is_refused_naming_the_task(tiny_cfg, tmp_path):
    run(tiny_cfg("federation.rounds=1", f"out_dir={tmp_path / 'run1'}"))
    changed = tiny_cfg(f"resume={tmp_path / 'run1'}", "+tasks.edges.decoder={_target_:mfed.models.decoder.ConvDecoder,"
                       "_partial_:true,hidden:4,norm:batch}", "out_dir=null")  # fmt: skip
    with pytest.raises(ValueError, match="the checkpoint's tasks.edges.decoder._target_ is None, this run's is 'mfed"):
        build(changed)


def test_a_task_may_name_its_own_decoder(tiny_cfg):
    light = "+tasks.edges.decoder={_target_:mfed.models.decoder.ConvDecoder,_partial_:true,hidden:4,norm:batch}"
    driver = build(tiny_cfg(light, "aggregation=fedavg_all"))
    assert driver.model.decoders["edges"].head.in_channels == 4
    assert driver.model.decoders["semseg"].head.in_channels == 8  # model.decoder.hidden
    state = driver.strategy.init_state(driver.model)  # edges' decoder shares no soup: no error
    assert set(state) == {"global", "task:semseg", "task:depth", "task:edges"}


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (("federation.groups=[{tasks:[semseg],count:1}]",), "set exactly one of federation.clients_per_task"),
        (("federation.clients_per_task=null", "federation.groups=[{tasks:[semseg,normals],count:1}]"),
         r"federation.groups\[0\].tasks must list distinct tasks of \['semseg', 'depth', 'edges'\]"),
        (("federation.clients_per_task=null", "federation.groups=[{tasks:[semseg,depth],count:2}]"),
         r"tasks \['edges'\] are held by no client"),
        (("federation.clients_per_task=null", "federation.groups=[{tasks:[semseg],count:0}]"),
         r"federation.groups\[0\].count must be an integer >= 1, got 0"),
        (("federation.clients_per_task=null",
          "federation.groups=[{tasks:[semseg,depth,edges],count:1},{tasks:[depth,semseg,edges],count:1}]"),
         r"federation.groups\[1\] holds the same tasks as an earlier group"),
        (("defences.robust=median", "aggregation=local"), "defences.robust=median cannot go with aggregation=local: "),
    ],
)  # fmt: skip
def test_bad_federations_are_refused_before_anything_starts(tiny_cfg, overrides, message):
    with pytest.raises(ValueError, match=message):
        build(tiny_cfg(*overrides))


def test_every_scope_a_client_downloads_counts_in_bytes_down_and_its_private_state_does_not():
    state = {"global": {"encoder.w": torch.zeros(4)}, "task:a": {"decoders.a.w": torch.zeros(2)},
             "task:b": {"decoders.b.w": torch.zeros(3)}, "personal:x": {"decoders.a.w": torch.zeros(2)},
             "client:x": {"weighting.log_var": torch.zeros(2)}, "server": {"hyper": torch.zeros(100)}}  # fmt: skip
    tally = TrainTally(state)
    tally.add(ClientUpdate("x", ("a", "b"), 1, {"encoder.w": torch.zeros(4)}, {"loss": 1.0}, state["client:x"]))
    row = tally.row()
    # global, both tasks, its personal scope, whose decoders.a.w replaces task:a's (sent once); never "server"
    assert row["comm/bytes_down"] == 4 * (4 + 3 + 2)
    state["personal:x"] = {"decoders.z.w": torch.zeros(5)}  # a personal key no shared scope holds: all of it counts
    tally = TrainTally(state)
    tally.add(ClientUpdate("x", ("a", "b"), 1, {"encoder.w": torch.zeros(4)}, {"loss": 1.0}, state["client:x"]))
    assert tally.row()["comm/bytes_down"] == 4 * (4 + 2 + 3 + 5)
    assert row["comm/private_bytes"] == 4 * 2


class Counting(ServerStep):
    """A server step that keeps a server-only tensor under its namespace, counting its rounds."""

    namespace = "counting"

    def declaration(self):
        return Declaration("aggregation=with_server_state")

    def step(self, ctx, aggregates):
        ctx.keep(self.namespace, {"rounds": ctx.kept(self.namespace).get("rounds", torch.zeros(1)) + 1})
        ctx.metrics["rounds"] = 1.0
        return aggregates


class WithServerState(MFed):
    """M-Fed whose fold keeps a server-only tensor, counting its rounds."""

    def init_state(self, model):
        return {**super().init_state(model), server_scope(): {"counting/rounds": torch.zeros(1)}}

    def server_steps(self):
        return [Counting()]


def test_a_server_only_scope_is_kept_checkpointed_and_never_sent(tiny_cfg, tmp_path):
    # Prepare: a strategy holding a tensor no client model has (a client loading it would fail)
    cfg = tiny_cfg("aggregation._target_=tests.unit.federation.test_mixed_clients.WithServerState")
    driver = build(cfg)
    # Execute
    history = start(driver, cfg).run()
    # Assert
    assert driver.state["server"]["counting/rounds"].item() == 2
    checkpoint = torch.load(Path(cfg.out_dir) / "checkpoint.pt", weights_only=True)
    assert checkpoint["state"]["server"]["counting/rounds"].item() == 2
    assert history[-1]["agg/rounds"] == 1.0
    assert "comm/bytes_down" in history[-1]


def test_a_gradient_weighting_reshapes_the_encoder_gradient_inside_lightnings_fit(monkeypatch):
    # Prepare: a two-task client under PCGrad; count the calls Lightning makes to its backward
    from torch.utils.data import DataLoader

    from mfed.federation.trainer import quiet_trainer
    from mfed.systems.weighting import PCGrad

    calls = []
    original = PCGrad.backward
    monkeypatch.setattr(PCGrad, "backward", lambda self, *args: calls.append(1) or original(self, *args))
    tasks = [SemanticSegmentation(num_classes=3), Depth()]
    model = ModelFactory(lambda: ConvEncoder(1, (4,), norm="none"), ConvDecoder, seed=0)(tasks)
    system = TaskSystem(model, tasks, lambda params: torch.optim.SGD(params, lr=0.1), PCGrad(["semseg", "depth"]))
    data = [{"image": torch.rand(1, 8, 8), "semseg": torch.zeros(8, 8, dtype=torch.long), "depth": torch.rand(1, 8, 8)}
            for _ in range(4)]  # fmt: skip
    # Execute
    quiet_trainer(1, "cpu").fit(system, DataLoader(data, batch_size=2))
    # Assert: once per batch
    assert len(calls) == 2
