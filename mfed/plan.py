"""Every check of a run that needs no data: ``plan(cfg)``, the first step of :func:`mfed.run.build`.

``mfed train`` and ``mfed train --print-config`` both run it, so the print approves exactly what a
run would take up to its data: the schema (keys, types, ranges, paths), the tasks, the fold
(aggregation, defences, privacy, server step; privacy's budget), who the clients are and how many
a round needs, the model, the optimizer, the weighting and the backend's settings. Reading the
data, joining a cluster and starting clients come after, in :func:`mfed.run.build`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate as hydra_instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf

from mfed.aggregation.base import Strategy
from mfed.aggregation.fold import Pipeline
from mfed.aggregation.stages import is_statistic
from mfed.data.domains import domain_tasks, held_tasks
from mfed.federation.backends import Backend
from mfed.federation.client import ClientConfig
from mfed.federation.sampling import required
from mfed.models.multitask import ModelFactory, MultiTaskModel
from mfed.schema import RESERVED, ConfigError, check_config
from mfed.schema.errors import first_line, show
from mfed.schema.hints import signature_of
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


@dataclass
class Plan:
    """The checked pieces of a run that need no data.

    Attributes:
        roster: The clients, in order: ids, tasks and seeds; their examples come with the data
            (:func:`mfed.run.build_specs`).

    """

    tasks: dict[str, Task]
    fold: Pipeline
    roster: list[ClientSpec]
    model_factory: ModelFactory
    model: MultiTaskModel
    optimizer: Callable[..., torch.optim.Optimizer]
    config: ClientConfig
    weighting: Any
    backend: Backend


def plan(cfg: DictConfig) -> Plan:
    """Check everything of ``cfg`` that needs no data, in one line naming the key; read nothing, start nothing.

    Raises:
        ValueError: The first bad value (a :class:`~mfed.schema.ConfigError` for the schema's).

    """
    check_config(cfg)  # unknown keys, wrong types, values out of range, resume, out_dir: one line naming the key
    tasks = build_tasks(cfg)
    fold = build_fold(cfg)
    roster = build_roster(cfg, tasks)
    tasks = domain_tasks(cfg, tasks, held_tasks(roster, list(tasks)), instantiate)
    fed = cfg.federation
    fraction = float(fed.fraction)
    per_round = max(1, round(fraction * len(roster)))
    required(float(fed.min_clients), per_round)  # a count no round can reach
    fold.strategy.check_round_size(per_round)  # e.g. FedAMP's step size
    for line in fold.defences.check_counts(kinds_per_scope(fold.strategy, roster, fraction)):
        log.warning("an attacker is not bounded in %s", line)
    if fold.privacy is not None:  # denominators, the calibrated noise, the budget: refused before anything starts
        fold.privacy.bind(fold.strategy.members(roster), len(roster), fraction, int(fed.rounds), int(cfg.seed))
    if fold.secure is not None:  # a scope of one client would reveal its update as the sum: refused before it starts
        for line in fold.secure.check_members(fold.strategy.members(roster), fraction):
            log.warning("%s", line)
    model_factory, model = build_model(cfg, tasks, fold)
    config = ClientConfig(
        local_epochs=int(fed.local_epochs), batch_size=int(fed.batch_size),
        torch_threads=int(fed.torch_threads), accelerator=str(fed.accelerator),
    )  # fmt: skip
    weighting = instantiate(cfg.weighting)
    for kind in {s.tasks for s in roster}:
        weighting(list(kind))  # a weighting that cannot take a kind of client fails here, not in round 1
    optimizer = build_optimizer(cfg.optimizer)
    backend = instantiate(cfg.backend)  # its settings; whether the cluster can hold them is checked with the data
    return Plan(tasks, fold, roster, model_factory, model, optimizer, config, weighting, backend)


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


def build_fold(cfg: DictConfig) -> Pipeline:
    """The round's fold: the strategy (``aggregation``) with ``defences``, ``privacy`` and ``server_optimizer``.

    A combination whose stages cannot hold together is refused here, in one line naming both keys,
    before any data is read or client started (:mod:`mfed.aggregation.contract`).
    """
    server_optimizer = instantiate(cfg.server_optimizer) if cfg.get("server_optimizer") is not None else None
    secure = instantiate(cfg.secure_aggregation) if cfg.get("secure_aggregation") is not None else None
    return Pipeline(
        instantiate(cfg.aggregation), instantiate(cfg.defences), instantiate(cfg.privacy), server_optimizer, secure
    )


def client_groups(fed: DictConfig, tasks: Mapping[str, Task]) -> list[tuple[tuple[str, ...], int, str]]:
    """The federation's kinds of client, their counts and domains: ``federation.groups``, or ``clients_per_task``.

    A group may name a ``data`` domain (a key of ``federation.domains``): its clients' examples
    come from that data set instead of the run's own (``""``).

    Raises:
        ValueError: Both or neither are set, a group is malformed or names an unknown task or
            domain, two groups hold the same tasks in one domain, or a task is held by no client
            (naming the key and the fix).

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
        return [((t,), int(per_task), "") for t in tasks]
    domains = list(fed.get("domains") or {})
    groups: list[tuple[tuple[str, ...], int, str]] = []
    listed = OmegaConf.to_container(raw_groups) if isinstance(raw_groups, ListConfig) else [raw_groups]
    assert isinstance(listed, list)
    for i, group in enumerate(listed):
        key = f"federation.groups[{i}]"
        if not isinstance(group, dict) or not {"tasks", "count"} <= set(group) <= {"tasks", "count", "data"}:
            raise ValueError(
                f"{key} must be {{tasks: [<task>, ...], count: <clients>}} (and optionally data: <domain>), got {group}"
            )
        domain = group.get("data") or ""
        if domain and domain not in domains:
            raise ValueError(
                f"{key}.data={domain}: not a domain of this run; federation.domains holds {domains or 'none'} "
                f"(add one: +data@federation.domains.{domain}=<data config>)"
            )
        names = [group["tasks"]] if isinstance(group["tasks"], str) else group["tasks"]
        unknown = [t for t in names or [] if t not in tasks]
        if not names or unknown or len(set(names)) != len(names):
            raise ValueError(f"{key}.tasks must list distinct tasks of {list(tasks)}, got {names}")
        if not isinstance(group["count"], int) or group["count"] < 1:
            raise ValueError(f"{key}.count must be an integer >= 1, got {group['count']}")
        if any(set(names) == set(g) and domain == d for g, _, d in groups):
            raise ValueError(f"{key} holds the same tasks as an earlier group: merge their counts")
        groups.append((tuple(names), group["count"], domain))
    unused = [d for d in domains if not any(d == g for _, _, g in groups)]
    if unused:
        raise ValueError(
            f"federation.domains.{unused[0]} is held by no group: give a group data: {unused[0]}, or drop it"
        )
    idle = [t for t in tasks if not any(t in g for g, _, _ in groups)]
    if idle:
        raise ValueError(f"tasks {idle} are held by no client: add them to federation.groups or drop (~tasks.<name>)")
    return groups


def build_roster(cfg: DictConfig, tasks: Mapping[str, Task]) -> list[ClientSpec]:
    """The federation's clients (:func:`client_groups`) with their ids, tasks and seeds, holding no examples yet.

    Clients are named ``<kind>-<i>`` (``semseg-0``, ``semseg+depth-1``) and numbered in group
    order, so ``clients_per_task: N`` gives the ids and seeds of ``N`` clients per task.
    """
    seed = int(cfg.seed)
    groups = client_groups(cfg.federation, tasks)
    members = [(names, i, domain) for names, count, domain in groups for i in range(count)]
    roster = []
    for k, (names, i, domain) in enumerate(members):
        roster.append(ClientSpec(f"{kind_of(names, domain)}-{i}", names, (), (), seed * 10_007 + k, domain=domain))
    return roster


def kinds_per_scope(strategy: Strategy, specs: Sequence[ClientSpec], fraction: float) -> dict[str, dict[str, int]]:
    """Per scope a strategy averages into, the clients of each kind that fold into it in a round (expected)."""
    return {s: {k: max(1, round(n * fraction)) for k, n in c.items()} for s, c in strategy.members(specs).items()}


def build_model(cfg: DictConfig, tasks: Mapping[str, Task], fold: Pipeline) -> tuple[ModelFactory, MultiTaskModel]:
    """The model factory and the global model: every decoder built once, so a bad model config fails here."""
    factory = ModelFactory(instantiate(cfg.model.encoder), instantiate(cfg.model.decoder), int(cfg.seed))
    model = factory(list(tasks.values()))
    privacy = fold.privacy
    if privacy is None:
        return factory, model
    statistics = [k for k in model.state_dict() if privacy.protected(k) and is_statistic(k)]
    if statistics:
        parts = " and ".join(p for p in privacy.parts if any(privacy.protected_by(p, k) for k in statistics))
        raise ValueError(
            f"privacy=dp protects the {parts}, whose BatchNorm running statistics would be noised like weights and "
            "wreck every prediction: set model.encoder.norm=group (the decoders follow; GroupNorm keeps no "
            "statistics, as DP training usually does)"
        )
    if privacy.expected:
        for line in privacy.drowned(fold.strategy.view(fold.strategy.init_state(model)), int(cfg.federation.rounds)):
            log.warning("%s", line)
    return factory, model


OPTIMIZER_WORDS = {"learning rate": "lr", "epsilon": "eps", "beta": "betas"}
"""What torch's optimizers call a parameter in their refusals (``Invalid learning rate: -0.1``)."""


def build_optimizer(node: DictConfig) -> Callable[..., torch.optim.Optimizer]:
    """``optimizer``: a partial taking the parameters, tried once on a stand-in so a bad value fails now.

    Raises:
        ConfigError: The optimizer refuses a setting (naming ``optimizer.<key>``, its value and a
            working one), which it would otherwise do in every client, after they started.

    """
    make = instantiate(node)
    try:
        make([torch.nn.Parameter(torch.zeros(1))])
    except (ValueError, TypeError) as err:
        raise ConfigError(_optimizer_refusal(node, first_line(err))) from None
    return make


def _optimizer_refusal(node: DictConfig, reason: str) -> str:
    target = str(node.get("_target_"))
    keys = [str(k) for k in node if str(k) not in RESERVED]
    key = next((k for k in keys if re.search(rf"\b{re.escape(k)}\b", reason)), None)
    key = key or next((k for w, k in OPTIMIZER_WORDS.items() if w in reason.lower() and k in keys), None)
    if key is None:
        return f"optimizer ({target}) refuses its settings: {reason}; fix the optimizer.<key> it names"
    default = signature_of(target)[0].get(key, (None, None))[1]
    scalar = isinstance(default, int | float) and not isinstance(default, bool)
    fix = f": e.g. optimizer.{key}={show(default)} (its default)" if scalar else ""
    return f"optimizer.{key}={show(node[key])} is refused by {target} ({reason}){fix}"
