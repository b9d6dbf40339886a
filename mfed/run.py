"""Config to objects and the whole run: ``build(cfg)`` returns a ready Driver, ``run(cfg)`` runs it.

Every object comes from a Hydra ``_target_``; :mod:`mfed.plan` builds and checks all that needs no
data, this module adds the data and the output folder and checks, before any client starts, that
the pieces fit together.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

from mfed.aggregation.base import Strategy
from mfed.federation.backends import ClientSetup
from mfed.federation.checkpointing import Checkpointer, load_checkpoint
from mfed.federation.driver import Driver, RunCallback
from mfed.federation.plateau import Plateau
from mfed.federation.rundir import (
    DEFAULT_STORAGE,
    RunLock,
    StorageSync,
    UriLock,
    check_fresh,
    fetch,
    is_uri,
    resolve_out_dir,
    run_dir_of,
    staging_dir,
)  # fmt: skip
from mfed.loggers.console import ConsoleReporter
from mfed.loggers.history import HistoryWriter
from mfed.plan import build_fold as build_fold  # re-exported: they were defined here
from mfed.plan import build_tasks as build_tasks
from mfed.plan import client_groups as client_groups
from mfed.plan import instantiate as instantiate
from mfed.plan import kinds_per_scope as kinds_per_scope
from mfed.plan import plan
from mfed.types import ClientSpec

log = logging.getLogger(__name__)


def build_specs(cfg: DictConfig, roster: Sequence[ClientSpec], pool: Any) -> list[ClientSpec]:
    """Partition the pool over the ``roster``'s clients (:func:`mfed.plan.build_roster`); split each shard.

    A shard gives its local test part first (``data.local_test_fraction``, FMTL-Bench's P-FL test
    set), then the rest is split train/val (``data.val_fraction``). ``cfg.data`` is the data set
    the roster's clients draw from (a domain's, :func:`mfed.data.domains.as_domain`).
    """
    from mfed.data.partition import local_test_split, train_val_split

    pool_size = len(pool)
    need = int(cfg.data.min_per_client)
    if len(roster) * need > pool_size:
        raise ValueError(
            f"{len(roster)} clients need at least {need} examples each but the data pool has {pool_size}: raise the "
            "pool size (data.pool.length for generated scenes) or lower federation.clients_per_task (or groups' counts)"
        )
    seed = int(cfg.seed)
    partition: Callable[..., Sequence[np.ndarray]] = instantiate(cfg.data.partition)
    shards = partition(pool, num_clients=len(roster), seed=seed, min_per_client=need)
    specs = []
    for k, spec in enumerate(roster):
        rest, local_test = local_test_split(shards[k], float(cfg.data.get("local_test_fraction", 0.0)), seed + k)
        train, val = train_val_split(rest, float(cfg.data.val_fraction), seed=seed + k)
        specs.append(with_indices(spec, train, val, local_test))
    return specs


UNFINGERPRINTED = (  # what a resume may change: where and how the run executes, logs and is evaluated
    "out_dir", "storage", "name", "group", "choices", "resume", "logger", "backend", "sweep", "benchmark",
    "federation.rounds", "federation.eval_every", "federation.eval_fraction", "federation.min_clients",
    "federation.max_retries", "federation.round_timeout_s", "federation.torch_threads", "federation.accelerator",
    "federation.patience", "federation.min_delta",
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


def setting_name(cfg: DictConfig) -> str:
    """What runs comparable with this one share: data set, task mix and federation (unless the default).

    ``fashion_scenes-default`` for the default run, ``shapes-default-mixed`` with ``data=shapes
    federation=mixed``; a group the config does not record (a config.yaml from before ``choices``)
    is left out.
    """
    choices = cfg.get("choices") or {}
    federation = choices.get("federation")
    parts = [choices.get("data"), cfg.get("mix_name", "custom"), None if federation == "default" else federation]
    return "-".join(str(p) for p in parts if p)


def run_name(cfg: DictConfig, strategy: Strategy) -> str:
    """``cfg.name``, else a readable one: strategy, setting (:func:`setting_name`), seed."""
    return str(cfg.get("name") or f"{strategy.name}-{setting_name(cfg)}-s{cfg.seed}")


def local_dir(out_dir: str) -> Path:
    """Where the run's files are written on this machine: ``out_dir``, or the staging folder of a URI."""
    return staging_dir(out_dir) if is_uri(out_dir) else Path(out_dir)


def name_run(cfg: DictConfig, strategy: Strategy) -> None:
    """Fill in ``name``, ``group`` and ``out_dir`` so that config.yaml records what the run used."""
    cfg.name = run_name(cfg, strategy)
    cfg.group = cfg.get("group") or setting_name(cfg)
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


def build_data(cfg: DictConfig, roster: Sequence[ClientSpec]) -> tuple[list[ClientSpec], Any, Any]:
    """The clients with their examples, the training pool and the global test set (``None`` without one).

    A cross-domain federation (:mod:`mfed.data.domains`) partitions each domain over its own
    clients and joins the pools and test sets, the run's own first; each client's test span is its
    domain's part of the joined test set. A data set that takes a task list (NYUD-v2,
    PASCAL-Context) then loads the tasks its domain's clients hold, not every task of the run.
    """
    from mfed.data.domains import Joined, as_domain, domain_configs, held_tasks

    domains = domain_configs(cfg)
    if not domains:
        pool = instantiate(cfg.data.pool)
        test = instantiate(cfg.data.test) if cfg.data.get("test") is not None else None
        return build_specs(cfg, roster, pool), pool, test
    pools, tests, specs = [], [], {}
    held = held_tasks(roster, list(cfg.tasks))
    for name in ["", *domains]:
        members = [s for s in roster if s.domain == name]
        data_cfg = as_domain(cfg, name) if name else cfg
        pools.append(load_held(data_cfg.data.pool, held.get(name, [])))
        tests.append(load_held(data_cfg.data.get("test"), held.get(name, [])))
        specs.update({s.client_id: s for s in build_specs(data_cfg, members, pools[-1])})
    if any(t is None for t in tests) and any(t is not None for t in tests):
        raise ValueError("every domain needs a test split, or none: data.test and federation.domains.<name>.test")
    joined, joined_test = Joined(pools), None if tests[0] is None else Joined(tests)
    order = {name: k for k, name in enumerate(["", *domains])}
    out = []
    for spec in roster:
        s, k = specs[spec.client_id], order[spec.domain]
        parts = (
            np.asarray(p, np.int64) + joined.offset(k) for p in (s.train_indices, s.val_indices, s.local_test_indices)
        )
        span = joined_test.span(k) if joined_test is not None else None
        out.append(replace(with_indices(s, *parts), test_span=span))
    return out, joined, joined_test


def load_held(node: DictConfig | None, tasks: Sequence[str]) -> Any:
    """The dataset of ``node`` (``None`` without one), loading only ``tasks`` where it takes a task list."""
    if node is None:
        return None
    return instantiate(node, **({"tasks": list(tasks)} if "tasks" in node else {}))


def with_indices(spec: ClientSpec, train: Any, val: Any, local_test: Any) -> ClientSpec:
    """``spec`` holding these parts of the training pool (as tuples of ints)."""
    as_tuple = lambda part: tuple(map(int, part))  # noqa: E731
    return replace(
        spec, train_indices=as_tuple(train), val_indices=as_tuple(val), local_test_indices=as_tuple(local_test)
    )


def build(cfg: DictConfig) -> Driver:
    """Build every object of a run from ``cfg`` and check that they fit; start nothing.

    First every check that needs no data (:func:`mfed.plan.plan`, what ``--print-config`` runs too),
    then the data, then the cluster's room for the clients.
    """
    p = plan(cfg)
    fold, tasks, fed = p.fold, p.tasks, cfg.federation
    name_run(cfg, fold.strategy)
    specs, pool, test = build_data(cfg, p.roster)
    setup = ClientSetup(dict(tasks), pool, p.model_factory, p.optimizer, p.config, test, p.weighting)
    p.backend.check(len(specs))  # resources that cannot fit are refused before anything starts
    driver = Driver(
        fold=fold, backend=p.backend, tasks=tasks, specs=specs, setup=setup, settings=run_settings(cfg),
        model=p.model, rounds=int(fed.rounds), fraction=float(fed.fraction), eval_every=int(fed.eval_every),
        eval_fraction=float(fed.get("eval_fraction", 1.0)),
        seed=int(cfg.seed), min_clients=float(fed.min_clients), max_retries=int(fed.max_retries),
        plateau=None if fed.get("patience") is None else Plateau(int(fed.patience), float(fed.min_delta)),
        callbacks=build_callbacks(cfg, fold.strategy),
    )  # fmt: skip
    if cfg.get("resume"):
        driver.restore(load_resume(str(cfg.resume)))
    driver.info = {
        "strategy": repr(fold.strategy), "fold": fold.describe(), "tasks": list(tasks), "clients": len(specs),
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
    locks: list[RunLock | UriLock] = [RunLock(out_dir)]
    if is_uri(str(cfg.out_dir)):
        locks.append(UriLock(str(cfg.out_dir)))  # one writer at the URI, whichever machine it runs on
    held: list[RunLock | UriLock] = []
    try:
        for lock in locks:
            lock.acquire()  # first: a folder in use is refused naming the run that uses it
            held.append(lock)
        check_fresh(out_dir, resuming)
        OmegaConf.save(cfg, out_dir / "config.yaml", resolve=True)
    except BaseException:
        for lock in held:
            lock.release()
        raise
    driver.callbacks = [*driver.callbacks, *locks]
    return driver
