"""Config to objects and the whole run: ``build(cfg)`` returns a ready Driver, ``run(cfg)`` runs it.

Every object comes from a Hydra ``_target_``; this module only wires them and checks, before any
client starts, that the pieces fit together.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate as hydra_instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf

from mfed.aggregation.base import Strategy
from mfed.aggregation.fold import Pipeline
from mfed.federation.backends import ClientSetup
from mfed.federation.checkpointing import Checkpointer, load_checkpoint
from mfed.federation.client import ClientConfig
from mfed.federation.driver import Driver, RunCallback
from mfed.federation.rundir import (
    DEFAULT_STORAGE,
    RunLock,
    StorageSync,
    check_fresh,
    fetch,
    is_uri,
    resolve_out_dir,
    run_dir_of,
    staging_dir,
)  # fmt: skip
from mfed.loggers.console import ConsoleReporter
from mfed.loggers.history import HistoryWriter
from mfed.models.multitask import ModelFactory
from mfed.schema import check_config
from mfed.tasks.base import Task
from mfed.types import ClientSpec, kind_of

log = logging.getLogger(__name__)


def instantiate(node: Any, **kwargs: Any) -> Any:
    """Hydra's instantiate, re-raising a constructor's ValueError/FileNotFoundError as itself.

    Our constructors name the config field and the fix; Hydra's wrapper would bury that message.
    """
    try:
        return hydra_instantiate(node, **kwargs)
    except InstantiationException as err:
        if isinstance(err.__cause__, ValueError | FileNotFoundError):
            raise err.__cause__ from None
        raise


def build_tasks(cfg: DictConfig) -> dict[str, Task]:
    """Instantiate ``cfg.tasks``; each entry's key must equal its task's name."""
    if not cfg.get("tasks"):
        raise ValueError("no tasks configured: pick a task_mix=<name> or add +task@tasks.<name>=<name>")
    tasks: dict[str, Task] = {}
    for key, task_cfg in cfg.tasks.items():
        task = instantiate(task_cfg)
        if not isinstance(task, Task):
            raise ValueError(f"tasks.{key} must build a mfed.tasks.Task, got {type(task).__name__}")
        if task.name != key:
            raise ValueError(f"tasks.{key} builds a task named {task.name!r}: set tasks.{key}.name={key}")
        tasks[str(key)] = task
    return tasks


def client_groups(fed: DictConfig, tasks: Mapping[str, Task]) -> list[tuple[tuple[str, ...], int]]:
    """The federation's kinds of client and their counts: ``federation.groups``, or ``clients_per_task`` of each task.

    Raises:
        ValueError: Both or neither are set, a group is malformed or names an unknown task, two
            groups hold the same tasks, or a task is held by no client (naming the key and the fix).

    """
    raw_groups, per_task = fed.get("groups"), fed.get("clients_per_task")
    if (raw_groups is None) == (per_task is None):
        raise ValueError(
            "set exactly one of federation.clients_per_task (single-task clients, that many per task) and "
            f"federation.groups (kinds of clients), got clients_per_task={per_task} and groups={raw_groups}"
        )
    if per_task is not None:
        if int(per_task) < 1:
            raise ValueError(f"federation.clients_per_task must be >= 1, got {per_task}")
        return [((t,), int(per_task)) for t in tasks]
    groups: list[tuple[tuple[str, ...], int]] = []
    listed = OmegaConf.to_container(raw_groups) if isinstance(raw_groups, ListConfig) else [raw_groups]
    assert isinstance(listed, list)
    for i, group in enumerate(listed):
        key = f"federation.groups[{i}]"
        if not isinstance(group, dict) or set(group) != {"tasks", "count"}:
            raise ValueError(f"{key} must be {{tasks: [<task>, ...], count: <clients>}}, got {group}")
        names = [group["tasks"]] if isinstance(group["tasks"], str) else group["tasks"]
        unknown = [t for t in names or [] if t not in tasks]
        if not names or unknown or len(set(names)) != len(names):
            raise ValueError(f"{key}.tasks must list distinct tasks of {list(tasks)}, got {names}")
        if not isinstance(group["count"], int) or group["count"] < 1:
            raise ValueError(f"{key}.count must be an integer >= 1, got {group['count']}")
        if any(set(names) == set(g) for g, _ in groups):
            raise ValueError(f"{key} holds the same tasks as an earlier group: merge their counts")
        groups.append((tuple(names), group["count"]))
    idle = [t for t in tasks if not any(t in g for g, _ in groups)]
    if idle:
        raise ValueError(f"tasks {idle} are held by no client: add them to federation.groups or drop (~tasks.<name>)")
    return groups


def build_specs(cfg: DictConfig, tasks: Mapping[str, Task], pool: Any) -> list[ClientSpec]:
    """Partition the pool over the federation's clients (:func:`client_groups`); split each shard into train/val.

    Clients are named ``<kind>-<i>`` (``semseg-0``, ``semseg+depth-1``) and numbered in group
    order, so ``clients_per_task: N`` gives the ids, shards and seeds of ``N`` clients per task.
    """
    from mfed.data.partition import train_val_split

    groups = client_groups(cfg.federation, tasks)
    pool_size = len(pool)
    n_clients = sum(count for _, count in groups)
    need = int(cfg.data.min_per_client)
    if n_clients * need > pool_size:
        raise ValueError(
            f"{n_clients} clients need at least {need} examples each but the data pool has {pool_size}: raise the "
            "pool size (data.pool.length for generated scenes) or lower federation.clients_per_task (or groups' counts)"
        )
    seed = int(cfg.seed)
    partition: Callable[..., Sequence[np.ndarray]] = instantiate(cfg.data.partition)
    shards = partition(pool, num_clients=n_clients, seed=seed, min_per_client=need)
    specs = []
    for k, (names, i) in enumerate((g, i) for g, count in groups for i in range(count)):
        train, val = train_val_split(shards[k], float(cfg.data.val_fraction), seed=seed + k)
        cid = f"{kind_of(names)}-{i}"
        specs.append(ClientSpec(cid, names, tuple(map(int, train)), tuple(map(int, val)), seed * 10_007 + k))
    return specs


def kinds_per_scope(strategy: Strategy, specs: Sequence[ClientSpec], fraction: float) -> dict[str, dict[str, int]]:
    """Per scope a strategy averages into, the clients of each kind that fold into it in a round (expected)."""
    return {s: {k: max(1, round(n * fraction)) for k, n in c.items()} for s, c in strategy.members(specs).items()}


def build_fold(cfg: DictConfig) -> Pipeline:
    """The round's fold: the strategy (``aggregation``) with ``defences``, ``privacy`` and ``server_optimizer``.

    A combination whose stages cannot hold together is refused here, in one line naming both keys,
    before any data is read or client started (:mod:`mfed.aggregation.contract`).
    """
    server_optimizer = instantiate(cfg.server_optimizer) if cfg.get("server_optimizer") is not None else None
    return Pipeline(instantiate(cfg.aggregation), instantiate(cfg.defences), instantiate(cfg.privacy), server_optimizer)


UNFINGERPRINTED = (  # what a resume may change: where and how the run executes, logs and is evaluated
    "out_dir", "storage", "name", "group", "resume", "logger", "backend", "sweep", "benchmark", "federation.rounds",
    "federation.eval_every", "federation.eval_fraction", "federation.min_clients", "federation.max_retries",
    "federation.round_timeout_s", "federation.torch_threads", "federation.accelerator",
)  # fmt: skip


def run_settings(cfg: DictConfig) -> dict[str, Any]:
    """Every configured value that defines the run, by dotted key: what a resume must match (its fingerprint).

    Derived from the config, never listed by hand: every hyperparameter, ``data.*``, the partition,
    the defences' thresholds, the seed. Left out: :data:`UNFINGERPRINTED` (where it runs, how it
    logs, how far it goes and how it is evaluated).
    """
    container = OmegaConf.to_container(cfg, resolve=True)
    flat: dict[str, Any] = {}

    def walk(node: Any, path: str) -> None:
        if path and (path in UNFINGERPRINTED or path.split(".")[0] in UNFINGERPRINTED):
            return
        if isinstance(node, dict) and node:  # plain values first: a resume names seed, not what interpolates it
            for key, value in sorted(node.items(), key=lambda item: isinstance(item[1], dict)):
                walk(value, f"{path}.{key}" if path else str(key))
        else:
            flat[path] = node

    walk(container, "")
    return flat


def run_name(cfg: DictConfig, strategy: Strategy) -> str:
    """``cfg.name``, else a readable one: strategy, task mix, seed."""
    return cfg.get("name") or f"{strategy.name}-{cfg.get('mix_name', 'custom')}-s{cfg.seed}"


def local_dir(out_dir: str) -> Path:
    """Where the run's files are written on this machine: ``out_dir``, or the staging folder of a URI."""
    return staging_dir(out_dir) if is_uri(out_dir) else Path(out_dir)


def name_run(cfg: DictConfig, strategy: Strategy) -> None:
    """Fill in ``name``, ``group`` and ``out_dir`` so that config.yaml records what the run used."""
    cfg.name = run_name(cfg, strategy)
    cfg.group = cfg.get("group") or cfg.get("mix_name", "custom")
    resume = str(cfg.resume) if cfg.get("resume") else None
    cfg.out_dir = resolve_out_dir(cfg.get("out_dir"), str(cfg.get("storage") or DEFAULT_STORAGE), cfg.name, resume)


def load_resume(resume: str) -> dict[str, Any]:
    """The checkpoint to resume from: a run's folder or checkpoint.pt, local or at a storage URI."""
    return load_checkpoint(fetch(resume) if is_uri(resume) else Path(resume).expanduser())


def build_callbacks(cfg: DictConfig, strategy: Strategy) -> list[RunCallback]:
    """Console, history.json, checkpoint, W&B (unless ``logger=none``) and, for a URI, the copy to it."""
    out_dir = local_dir(str(cfg.out_dir))
    callbacks: list[RunCallback] = [ConsoleReporter(), HistoryWriter(out_dir), Checkpointer(out_dir)]
    if cfg.get("logger") is not None:
        resolved = OmegaConf.to_container(cfg, resolve=True)
        assert isinstance(resolved, dict)
        callbacks.append(
            instantiate(
                cfg.logger,
                out_dir=out_dir,
                name=cfg.name,
                group=cfg.group,
                run_config=resolved,
                _recursive_=False,  # the resolved config holds _target_ nodes: log them, don't build them
            )  # fmt: skip
        )
    if is_uri(str(cfg.out_dir)):
        callbacks.append(StorageSync(out_dir, str(cfg.out_dir)))  # last: it copies what the others wrote
    return callbacks


def build(cfg: DictConfig) -> Driver:
    """Build every object of a run from ``cfg`` and check that they fit; start nothing."""
    check_config(cfg)  # unknown keys, wrong types, resume, out_dir: one line naming the key
    tasks = build_tasks(cfg)
    fold = build_fold(cfg)
    strategy, privacy = fold.strategy, fold.privacy
    name_run(cfg, strategy)
    pool = instantiate(cfg.data.pool)
    specs = build_specs(cfg, tasks, pool)
    for line in fold.defences.check_counts(kinds_per_scope(strategy, specs, float(cfg.federation.fraction))):
        log.warning("an attacker is not bounded in %s", line)
    if privacy is not None:  # denominators, the calibrated noise, the budget: refused before anything starts
        privacy.bind(strategy.members(specs), len(specs), float(cfg.federation.fraction), int(cfg.federation.rounds))
    model_factory = ModelFactory(instantiate(cfg.model.encoder), instantiate(cfg.model.decoder), int(cfg.seed))
    model = model_factory(list(tasks.values()))  # builds every decoder once: bad model configs fail here
    if privacy is not None and any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        log.warning(
            "privacy=dp with BatchNorm: its running statistics are noised with the protected parts (variances "
            "clamped at 0) and can wreck predictions; model.encoder.norm=group keeps none (as DP training usually does)"
        )
    fed = cfg.federation
    config = ClientConfig(
        local_epochs=int(fed.local_epochs), batch_size=int(fed.batch_size),
        torch_threads=int(fed.torch_threads), accelerator=str(fed.accelerator),
    )  # fmt: skip
    test = instantiate(cfg.data.test) if cfg.data.get("test") is not None else None
    weighting = instantiate(cfg.weighting)
    for kind in {s.tasks for s in specs}:
        weighting(list(kind))  # a weighting that cannot take a kind of client fails here, not in round 1
    setup = ClientSetup(dict(tasks), pool, model_factory, instantiate(cfg.optimizer), config, test, weighting)
    backend = instantiate(cfg.backend)
    backend.check(len(specs))  # resources that cannot fit are refused before anything starts
    driver = Driver(
        fold=fold, backend=backend, tasks=tasks, specs=specs, setup=setup, settings=run_settings(cfg),
        model=model, rounds=int(fed.rounds), fraction=float(fed.fraction), eval_every=int(fed.eval_every),
        eval_fraction=float(fed.get("eval_fraction", 1.0)),
        seed=int(cfg.seed), min_clients=float(fed.min_clients), max_retries=int(fed.max_retries),
        callbacks=build_callbacks(cfg, strategy),
    )  # fmt: skip
    if cfg.get("resume"):
        driver.restore(load_resume(str(cfg.resume)))
    driver.info = {
        "strategy": repr(strategy), "fold": fold.describe(), "tasks": list(tasks), "clients": len(specs),
        "rounds": driver.rounds, "out_dir": str(cfg.out_dir),
    }  # fmt: skip
    return driver


def run(cfg: DictConfig) -> list[dict[str, Any]]:
    """Build, check and run; return the history.

    The run writes ``config.yaml``, ``history.json``, ``checkpoint.pt`` and ``summary.json`` into
    ``out_dir`` (see :mod:`mfed.federation.rundir`), which it holds locked while it runs. A new run
    needs an empty ``out_dir``; a resumed run writes into the run it resumes.
    """
    return start(build(cfg), cfg).run()


def start(driver: Driver, cfg: DictConfig) -> Driver:
    """Claim the output folder for ``driver`` (refusing one in use or holding another run) and write config.yaml.

    The folder stays locked until the driver's run ends (a ``RunLock`` callback releases it).
    """
    out_dir = local_dir(str(cfg.out_dir))
    resuming = bool(cfg.get("resume")) and str(cfg.out_dir) == run_dir_of(str(cfg.resume))
    lock = RunLock(out_dir)
    lock.acquire()  # first: a folder in use is refused naming the run that uses it
    try:
        check_fresh(out_dir, resuming)
        OmegaConf.save(cfg, out_dir / "config.yaml", resolve=True)
    except BaseException:
        lock.release()
        raise
    driver.callbacks = [*driver.callbacks, lock]
    return driver
