"""Cross-domain federations: several data sets as one index space, and the checks that they can share an encoder.

A group of ``federation.groups`` may name a ``data`` domain, a key of ``federation.domains``
(each a whole data config, e.g. ``- /data@federation.domains.shapes: shapes`` in a federation
config's defaults). Its clients draw their examples from that data set's pool and score that data
set's test split; everything else (the encoder, the tasks' decoders, the strategy) is shared, as
in FMTL-Bench's cross-domain scenarios (NYUD-v2 clients beside PASCAL-Context clients).

Each domain is partitioned over its own clients with the run's partition rule and split by its
own ``val_fraction`` and ``local_test_fraction``. The pools (and the test sets) are then joined
in order, the run's own first (:class:`Joined`), so a client's indices point into one dataset
and every backend ships and shards it as before.

A domain must give images with the run's channels (one encoder reads them all). A task held by
one other domain only is built from that domain's data config (its classes, its depth offset); a
task held in two domains must be built alike from both data configs: the decoder and the metric
are one. A task whose label space differs between data sets
(NYUD-v2's 40 classes against PASCAL-Context's 21) cannot be one task.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict
from torch.utils.data import Dataset


class Joined(Dataset[Any]):
    """Datasets one after another as one: index ``offset(k) + i`` is item ``i`` of the ``k``-th.

    Args:
        parts: The datasets, the run's own first.

    """

    def __init__(self, parts: Sequence[Any]) -> None:
        if not parts:
            raise ValueError("Joined needs at least one dataset")
        self.parts = list(parts)
        self.ends = []
        total = 0
        for part in self.parts:
            total += len(part)
            self.ends.append(total)

    def __len__(self) -> int:
        return self.ends[-1]

    def offset(self, k: int) -> int:
        """Where the ``k``-th dataset starts."""
        return 0 if k == 0 else self.ends[k - 1]

    def span(self, k: int) -> tuple[int, int]:
        """``(start, stop)`` of the ``k``-th dataset's indices."""
        return self.offset(k), self.ends[k]

    def __getitem__(self, index: int) -> Any:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} joined examples")
        k = bisect.bisect_right(self.ends, index)
        return self.parts[k][index - self.offset(k)]


def domain_configs(cfg: DictConfig) -> dict[str, DictConfig]:
    """``federation.domains`` as ``{name: data config}``, in order (empty for a single-domain run)."""
    domains = cfg.federation.get("domains") or {}
    return {str(name): node for name, node in domains.items()}


def as_domain(cfg: DictConfig, name: str) -> DictConfig:
    """``cfg`` with ``data`` replaced by the domain ``name``'s data config (the run's partition unless it has one)."""
    other = OmegaConf.create(OmegaConf.to_container(cfg, resolve=False))
    data = OmegaConf.create(OmegaConf.to_container(cfg.federation.domains[name], resolve=True))  # where it stands
    assert isinstance(other, DictConfig) and isinstance(data, DictConfig)
    with open_dict(other), open_dict(data):
        if data.get("partition") is None:
            data.partition = cfg.data.partition
        other.data = data
    return other


def held_tasks(roster: Sequence[Any], order: Sequence[str]) -> dict[str, list[str]]:
    """Each domain's tasks (``""``: the run's own), in ``order``: the tasks its clients hold."""
    held: dict[str, set[str]] = {}
    for spec in roster:
        held.setdefault(spec.domain, set()).update(spec.tasks)
    return {domain: [t for t in order if t in names] for domain, names in held.items()}


def domain_tasks(
    cfg: DictConfig, tasks: Mapping[str, Any], held: Mapping[str, Sequence[str]], build: Callable[[Any], Any]
) -> dict[str, Any]:
    """The run's tasks, each built from the data set of the domain holding it; refuse domains that cannot share.

    ``tasks`` were built from ``data``; a task held in one other domain only is built again from
    that domain's data config (its classes, its depth offset), and one held in several must build
    alike from each. ``held``: each domain's tasks (:func:`held_tasks`); ``build`` instantiates a
    task's config (:func:`mfed.plan.instantiate`).

    Raises:
        ValueError: A domain draws the same examples as another (the same pool config but its
            length), its channels differ from ``data.channels``, or a task held in two domains
            builds differently from their configs (naming both values and the fix).

    """
    holders: dict[str, list[str]] = {}
    for name, names in held.items():
        for task in names:
            holders.setdefault(task, []).append(name)
    out = dict(tasks)

    def source(pool: Any) -> Any:  # what a pool draws from: its config but its length (the first n of one source)
        plain = OmegaConf.to_container(pool, resolve=True)
        return {k: v for k, v in plain.items() if k != "length"} if isinstance(plain, dict) else plain

    pools = {"data": source(cfg.data.pool)}
    for name, names in held.items():
        if not name:
            continue
        other = as_domain(cfg, name)
        pool = source(other.data.pool)
        same = [key for key, seen in pools.items() if seen == pool]
        if same:
            raise ValueError(
                f"federation.domains.{name} draws the same examples as {same[0]} (the same pool config but its "
                f"length): give it another data set, or another seed (federation.domains.{name}.pool.seed=<int>)"
            )
        pools[f"federation.domains.{name}"] = pool
        if int(other.data.channels) != int(cfg.data.channels):
            raise ValueError(
                f"federation.domains.{name}.channels={other.data.channels} but data.channels={cfg.data.channels}: "
                "one encoder reads every domain's images; pick data sets with the same channels"
            )
        for task_name in names:
            built = build(other.tasks[task_name])
            if holders[task_name] == [name]:  # its domain's alone: built from that data set
                out[task_name] = built
                continue
            first = holders[task_name][0]
            ours, theirs = vars(out[task_name]), vars(built)
            differ = sorted(k for k in ours if k != "decoder" and ours[k] != theirs.get(k))
            if differ:
                key, where = differ[0], f"federation.domains.{first}" if first else "data"
                raise ValueError(
                    f"tasks.{task_name}.{key} is {ours[key]} with {where} but {theirs.get(key)} with "
                    f"federation.domains.{name}: a task held in two domains is one decoder and one metric; set "
                    f"tasks.{task_name}.{key} explicitly if they agree, or hold the task in one domain only"
                )
    return out
