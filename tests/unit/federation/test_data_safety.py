"""Data safety: what leaves a client is parameters, counts and metric states; no sample reaches W&B.

The field sets are spelled out on purpose: a new field in a client message, or a new kind of
value logged to W&B, fails here until someone decides it carries no data.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from torch import Tensor

from mfed.federation.client import Client
from mfed.models.multitask import ENCODER_PREFIX, decoder_prefix
from mfed.run import build
from mfed.systems.weighting import WEIGHTING_PREFIX, weighting_state
from mfed.types import ClientEvaluation, ClientUpdate
from tests.conftest import TINY

# Every task, one client each, so every decoder and every metric's state is inspected.
ALL_TASKS = ("task_mix=pascal_like", "+task@tasks.depth=depth", "federation.clients_per_task=1")
UPDATE_FIELDS = {"client_id", "tasks", "num_examples", "state", "metrics", "private", "within_bound"}
EVALUATION_FIELDS = {"client_id", "tasks", "num_examples", "metrics", "metric_states"}
# Clients holding several tasks, with a weighting that keeps parameters of its own (private state).
MIXED = (
    "federation.clients_per_task=null",
    "federation.groups=[{tasks:[semseg,depth,edges],count:2},{tasks:[semseg],count:1},{tasks:[saliency],count:1},"
    "{tasks:[parts,normals],count:1},{tasks:[depth],count:1}]",
    "weighting=uncertainty",
)
REPO = Path(__file__).resolve().parents[3]
IMAGE_PIXELS = int(dict(o.split("=", 1) for o in TINY)["data.pool.size"]) ** 2


def _image_hw(client: Client) -> tuple[int, int]:
    image = client.train_data[0]["image"]  # (C, H, W)
    return int(image.shape[-2]), int(image.shape[-1])


def _assert_not_image_shaped(name: str, value: Tensor, hw: tuple[int, int]) -> None:
    assert isinstance(value, Tensor), f"{name} is a {type(value).__name__}, not a tensor"
    assert value.dim() < 2 or tuple(value.shape[-2:]) != hw, f"{name} has image shape {tuple(value.shape)}"


def _check_update(update: ClientUpdate, client: Client) -> None:
    own = {**client.system.model.state_dict(), **weighting_state(client.system.weighting)}
    allowed = (ENCODER_PREFIX, WEIGHTING_PREFIX, *(decoder_prefix(t) for t in client.spec.tasks))
    hw = _image_hw(client)
    for f in dataclasses.fields(update):
        value = getattr(update, f.name)
        if f.name == "client_id":
            assert type(value) is str
        elif f.name == "tasks":
            assert type(value) is tuple and all(type(t) is str for t in value)
        elif f.name == "num_examples":
            assert type(value) is int and value >= 0
        elif f.name in ("state", "private"):  # what it sends, and what the driver holds for it
            for key, tensor in value.items():
                assert key in own and key.startswith(allowed), key
                assert tensor.shape == own[key].shape and tensor.device.type == "cpu", key
                _assert_not_image_shaped(key, tensor, hw)
        elif f.name == "metrics":
            assert value and all(type(k) is str and type(v) is float for k, v in value.items()), value
            assert {k.split("/")[0] for k in value if "/" in k} == set(client.spec.tasks), value
        elif f.name == "within_bound":  # one bit, and only when the step asked the client to clip
            assert value is None or type(value) is bool
        else:
            pytest.fail(f"ClientUpdate.{f.name} is not checked by this test")
    assert (update.client_id, update.tasks) == (client.spec.client_id, client.spec.tasks)
    assert update.num_examples == len(client.spec.train_indices)


def _check_evaluation(evaluation: ClientEvaluation, client: Client) -> None:
    declared = {
        (task.name, name): set(metric.metric_state) for task in client.system.tasks.values()
        for name, metric in task.metrics().items()
    }  # fmt: skip
    hw = _image_hw(client)
    for f in dataclasses.fields(evaluation):
        value = getattr(evaluation, f.name)
        if f.name == "client_id":
            assert type(value) is str
        elif f.name == "tasks":
            assert value == client.spec.tasks
        elif f.name == "num_examples":
            assert type(value) is int and value == len(client.spec.val_indices)
        elif f.name == "metrics":
            flat = {(t, n): v for t, metrics in value.items() for n, v in metrics.items()}
            assert set(flat) == set(declared) and all(type(v) is float for v in flat.values()), value
        elif f.name == "metric_states":
            assert {(t, n): set(s) for t, states in value.items() for n, s in states.items()} == declared
            for task, states in value.items():
                for name, state in states.items():
                    for key, item in state.items():
                        for i, tensor in enumerate(item if isinstance(item, list) else [item]):
                            _assert_not_image_shaped(f"{task}.{name}.{key}[{i}]", tensor, hw)
        else:
            pytest.fail(f"ClientEvaluation.{f.name} is not checked by this test")
    assert evaluation.client_id == client.spec.client_id


def test_client_messages_have_exactly_the_audited_fields() -> None:
    assert {f.name for f in dataclasses.fields(ClientUpdate)} == UPDATE_FIELDS
    assert {f.name for f in dataclasses.fields(ClientEvaluation)} == EVALUATION_FIELDS


@pytest.mark.parametrize(
    ("aggregation", "mixed"), [("mfed", ()), ("fedavg", ()), ("local", ()), ("mfed", MIXED), ("fedavg", MIXED)]
)
def test_only_parameters_counts_and_metric_states_leave_a_client(tiny_cfg, aggregation, mixed):
    # Prepare: every task's client (and clients holding several tasks, with learnt loss weights)
    driver = build(tiny_cfg(*ALL_TASKS, f"aggregation={aggregation}", "federation.rounds=1", *mixed))
    driver.state = driver.strategy.init_state(driver.model)
    driver.backend.start(driver.specs, driver.setup)
    clients = driver.backend.clients  # the serial backend's Client objects
    # Execute
    updates = list(driver.backend.fit(driver.client_ids, driver.state, 1, driver.plan(1, driver.client_ids)))
    evaluations = list(driver.backend.evaluate(driver.client_ids, driver.state))
    # Assert
    assert len(updates) == len(evaluations) == len(clients) == 6
    for update, evaluation in zip(updates, evaluations, strict=True):
        _check_update(update, clients[update.client_id])
        _check_evaluation(evaluation, clients[evaluation.client_id])
    if aggregation != "local":  # local uploads nothing; the others send every trained tensor
        assert all(u.state for u in updates)
    if mixed:  # the learnt loss weights stay with their client: private state, never uploaded
        assert all(set(u.private) == {"weighting.log_var"} for u in updates)
        assert not any(k.startswith("weighting") for u in updates for k in u.state)


def _values(value: Any) -> Iterator[Any]:
    """Every dict, list and leaf nested in ``value`` (the value itself first)."""
    yield value
    children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
    for child in children:
        yield from _values(child)


@pytest.mark.slow
def test_no_data_sample_reaches_wandb(tmp_path):
    from mfed.loggers.wandb_offline import find_offline_runs, iter_records, read_run_file

    pytest.importorskip("wandb")
    # Prepare: a real run of the CLI logging to an offline W&B run
    out = tmp_path / "run"
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    overrides = [o for o in TINY if o != "logger=none"]
    command = [sys.executable, "-m", "mfed.cli", "train", *overrides, "logger=wandb", f"out_dir={out}"]
    # Execute
    done = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True, timeout=300)
    # Assert
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    (path,) = find_offline_runs(out)
    kinds = [record.WhichOneof("record_type") for record in iter_records(path)]
    assert "history" in kinds
    assert not {"artifact", "use_artifact", "link_artifact"} & set(kinds)  # tables travel as artifacts
    files = [f.path for r in iter_records(path) if r.WhichOneof("record_type") == "files" for f in r.files.files]
    assert not [f for f in files if f.startswith("media") or f.endswith((".png", ".jpg", ".npz", ".table.json"))]
    assert not list(path.parent.rglob("media"))  # W&B saves images and tables under files/media
    run = read_run_file(path)
    assert [row["round"] for row in run.history] == [1, 2]
    for row in run.history:  # scalars only: no image, table, histogram or array
        bad = {k: v for k, v in row.items() if not isinstance(v, (int, float)) or isinstance(v, bool)}
        assert not bad, bad
    for name, logged in (("summary", run.summary), ("config", run.config)):
        for value in _values(logged):
            assert not (isinstance(value, dict) and "_type" in value), f"{name} holds W&B media {value}"
            assert not (isinstance(value, list) and len(value) >= IMAGE_PIXELS), f"{name} holds an array"
    assert "_type" not in json.dumps([run.history, run.summary], default=str)
