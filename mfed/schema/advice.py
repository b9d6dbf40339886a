"""Advice for an override Hydra refuses, each fix an override that works.

A key in the wrong place or under another framework's name (``rounds``, ``num_rounds``), null for
a config group (``privacy=null``), several values for one run (``seed=0,1``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence

from mfed.config_dir import group_options, is_group
from mfed.schema.errors import did_you_mean, join_key
from mfed.schema.plain import Spec, plain_schema

FLOWER = {
    "num_rounds": "federation.rounds",  # ServerConfig
    "fraction_fit": "federation.fraction",  # its strategies
    "fraction_evaluate": "federation.eval_fraction",
    "min_fit_clients": "federation.min_clients",
    "round_timeout": "federation.round_timeout_s",
    "strategy": "aggregation",
}
"""Flower's names of mfed's keys."""
FOREIGN = {**FLOWER, "epochs": "federation.local_epochs", "lr": "optimizer.lr", "learning_rate": "optimizer.lr"}
"""Other frameworks' names of mfed's keys, by their last part."""


def near_key(key: str) -> str | None:
    """The key meant by ``key``, which names no key: the closest in its node, a foreign name's, or one elsewhere.

    Elsewhere: a known key whose last part is (close to) ``key``'s, e.g. ``federation.rounds`` for ``rounds``.
    """
    parent, _, name = key.rpartition(".")
    if name in FOREIGN:
        return FOREIGN[name]
    spec: Spec | None = plain_schema()
    for part in parent.split(".") if parent else []:
        spec = spec.get(part) if isinstance(spec, dict) else None
    near = did_you_mean(name, spec) if isinstance(spec, dict) else None
    if near is not None:
        return join_key(parent, near)
    leaves = {path.rpartition(".")[2]: path for path in reversed(list(_leaves(plain_schema()))) if path != key}
    return leaves.get(did_you_mean(name, leaves, cutoff=0.75) or "")


def foreign_note(key: str, near: str) -> str:
    """`` (num_rounds is Flower's name)`` where ``near`` is :data:`FLOWER`'s key for ``key``, else ``""``."""
    name = key.rpartition(".")[2]
    return f" ({name} is Flower's name)" if FLOWER.get(name) == near else ""


def _leaves(spec: Mapping[str, Spec], path: str = "") -> Iterator[str]:
    for key, child in spec.items():
        yield from _leaves(child, join_key(path, key)) if isinstance(child, dict) else [join_key(path, key)]


def null_group(overrides: Sequence[str]) -> str | None:
    """For ``privacy=null`` (a config group set to null, which Hydra refuses): the option that turns it off."""
    for override in overrides:
        key, _, value = override.lstrip("+~").partition("=")
        if value.strip().lower() not in ("null", "~") or not is_group(key):
            continue
        options = group_options(key)
        if "none" in options:
            fix = f"{key}=none turns it off"
        elif key in ("sweep", "benchmark"):
            fix = f"leave {key}= out: it is unset unless given"
        else:
            fix = f"choose one of {', '.join(options)}"
        return f"{override}: {key} is a config group, which takes an option, not null: {fix} (configs/{key}/)"
    return None


def several_values(message: str) -> str | None:
    """For Hydra's 'Ambiguous value' (``seed=0,1``): one run takes one value; a sweep runs several."""
    match = re.match(r"Ambiguous value for argument '([^=']+)=([^']*)'", message)
    if match is None:
        return None
    key, values = match.group(1).lstrip("+~"), match.group(2)
    first = values.split(",")[0]
    if "." in key:  # a dotted grid key is a file's, not an override's
        sweep = f"configs/sweep/<name>.yaml with grid: {{{key}: [{values}]}}, then mfed sweep sweep=<name>"
    else:
        sweep = f"mfed sweep sweep=quick ++sweep.grid.{key}=[{values}] (or a grid in configs/sweep/<name>.yaml)"
    spec: Spec | None = plain_schema()
    for part in key.split("."):
        spec = spec.get(part) if isinstance(spec, dict) else None
    scalar = isinstance(spec, str) and spec.rstrip("?") in ("int", "float", "bool", "str")
    scalar = scalar or is_group(key)
    listed = "" if scalar else f"; a list value is written {key}=[{values}]"
    return (
        f"{key}={values}: one run takes one value, and mfed takes no --multirun: give one ({key}={first}), "
        f"or run each as a sweep: {sweep}{listed}"
    )
