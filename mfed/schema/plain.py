"""The schema of plain (non-``_target_``) keys: :data:`PLAIN` plus what the YAML files under configs/ set."""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any, TypeAlias

from omegaconf import OmegaConf

from mfed.config_dir import config_dirs
from mfed.schema.errors import join_key
from mfed.schema.hints import SCALARS

# A leaf: "int" | "float" | "bool" | "str" | "any" | "target" (a _target_ node) | "targets" (a mapping
# of _target_ nodes); a trailing "?" allows null. A dict is a plain node with these keys.
Spec: TypeAlias = "str | dict[str, Spec]"
# fmt: off
PLAIN: dict[str, Spec] = {
    "seed": "int", "out_dir": "str?", "storage": "str?", "name": "str?", "group": "str?", "resume": "str?",
    "choices": "any",
    "mix_name": "str?", "tasks": "targets", "aggregation": "target", "backend": "target", "optimizer": "target",
    "logger": "target?", "model": {"encoder": "target", "decoder": "target"}, "weighting": "target",
    "defences": "target", "privacy": "target", "server_optimizer": "target", "secure_aggregation": "target",
    "data": {
        "pool": "target", "test": "target?", "partition": "target", "channels": "int", "num_classes": "int",
        "num_parts": "int", "num_labels": "int", "depth_offset": "float", "val_fraction": "float",
        "local_test_fraction": "float", "min_per_client": "int",
    },
    "federation": {
        "rounds": "int", "clients_per_task": "int?", "groups": "any", "min_clients": "float", "fraction": "float",
        "local_epochs": "int", "batch_size": "int", "eval_every": "int", "eval_fraction": "float",
        "torch_threads": "int", "accelerator": "str", "max_retries": "int", "round_timeout_s": "float?",
        "domains": "any", "patience": "int?", "min_delta": "float", "volume": "float",
    },
    "sweep": {"name": "str", "grid": "any", "reference": "str?", "max_concurrent": "int"},
    "benchmark": {
        "name": "str", "strategies": "any", "seeds": "any", "overrides": "any", "settings": "any",
        "reference": "any", "compare": "str?", "confidence": "float", "max_concurrent": "int", "aliases": "any",
        "tune": "any",
    },
}
# fmt: on


def plain_schema() -> dict[str, Spec]:
    """:data:`PLAIN` plus the plain keys that YAML files under configs/ (and the user's folders) add, typed by value."""
    return _plain_schema(_roots())


def plain_examples() -> dict[str, Any]:
    """A value from configs/ for each plain key (the first YAML file that sets it), for error messages."""
    return _yaml_keys(_roots())[1]


def _roots() -> tuple[str, ...]:
    return tuple(str(d) for d in config_dirs())


@lru_cache(maxsize=8)
def _plain_schema(roots: tuple[str, ...]) -> dict[str, Spec]:
    schema: dict[str, Spec] = copy.deepcopy(PLAIN)
    for path, kinds in _yaml_keys(roots)[0].items():
        parts, node = path.split("."), schema
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                break
            node = child
        else:
            old = node.get(parts[-1])
            if old is None:
                node[parts[-1]] = _infer(kinds)
            elif isinstance(old, str) and "null" in kinds and not old.endswith("?") and old != "any":
                node[parts[-1]] = old + "?"
    return schema


def _infer(kinds: set[str]) -> str:
    """One spec for the kinds of values YAML files give a key (an int and a float: a float)."""
    rest = kinds - {"null"} - ({"int"} if "float" in kinds else set())
    kind = rest.pop() if len(rest) == 1 else "any"
    return kind + "?" if "null" in kinds and kind != "any" else kind


@lru_cache(maxsize=8)
def _yaml_keys(roots: tuple[str, ...]) -> tuple[dict[str, set[str]], dict[str, Any]]:
    """Every plain key that the YAML files under ``roots`` (the package's first) set: its value kinds, a first value."""
    kinds: dict[str, set[str]] = {}
    examples: dict[str, Any] = {}
    main = OmegaConf.to_container(OmegaConf.load(Path(roots[0]) / "config.yaml"))
    assert isinstance(main, dict)
    groups = {str(k).split()[-1].lstrip("/") for d in main.get("defaults", []) if isinstance(d, dict) for k in d}
    files = [("", Path(roots[0]) / "config.yaml")]
    for group in [p for root in roots for p in sorted(Path(root).iterdir()) if p.is_dir()]:
        for file in sorted(group.glob("*.yaml")):
            package = _package(file, group.name)
            if package is not None or group.name in groups:
                files.append((group.name if package is None else package, file))
    for package, file in files:
        content = OmegaConf.to_container(OmegaConf.load(file))
        value: Any = {k: v for k, v in content.items() if k != "defaults"} if isinstance(content, dict) else content
        for path, leaf in _leaves(package, value):
            kinds.setdefault(path, set()).add(_kind(leaf))
            if _kind(leaf) in SCALARS.values():
                examples.setdefault(path, leaf)
    return kinds, examples


def _package(file: Path, group: str) -> str | None:
    """The ``# @package`` header of a YAML file (``_global_`` as ""), or None when it has none."""
    match = re.search(r"^#\s*@package\s+(\S+)", file.read_text(), re.MULTILINE)
    if match is None:
        return None
    package = match.group(1).replace("_group_", group)
    return package.removeprefix("_global_").lstrip(".")


def _leaves(path: str, value: Any) -> Iterator[tuple[str, Any]]:
    """Dotted keys down to scalars, lists and _target_ nodes (whose keys their constructor decides)."""
    if isinstance(value, dict) and value and "_target_" not in value:
        for key, child in value.items():
            yield from _leaves(join_key(path, str(key)), child)
    elif path:
        yield path, value


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, dict):
        return "target" if "_target_" in value else "any"
    if isinstance(value, str) and "${" in value:
        return "any"  # an interpolation: its resolved value is checked against nothing known
    return SCALARS.get(type(value), "any")
