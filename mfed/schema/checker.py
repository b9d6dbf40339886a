"""The walk over a resolved config that checks each key against the plain schema or its constructor."""

from __future__ import annotations

import typing
from collections.abc import Iterator, Mapping
from typing import Any

from mfed.schema.advice import FOREIGN, foreign_note
from mfed.schema.errors import ConfigError, did_you_mean, first_line, join_key, quote, show
from mfed.schema.hints import Allowed, allowed_by, allowed_of, element_allowed, sequence_only, signature_of
from mfed.schema.plain import Spec, plain_examples, plain_schema

RESERVED = ("_target_", "_partial_", "_recursive_", "_convert_", "_args_")
MOVED = {f"aggregation.{k}": f"defences.{k}" for k in ("clip_norm", "robust", "trim_fraction")}
"""Keys that moved, and where to: the defences are declared once for every strategy."""


class _Checker:
    """Walks the resolved config, raising at the first bad key.

    A key whose value comes from an interpolation (``data.pool.seed: ${seed}``) is reported only when
    nothing else is: its source is checked at its own place, under its own name.
    """

    def __init__(self, raw: Mapping[str, Any]) -> None:
        items = list(_items("", raw))  # unresolved: interpolations are still strings
        self.paths = [path for path, _ in items]  # for did-you-mean across nodes
        self.links = {path: v for path, v in items if isinstance(v, str) and "${" in v}
        self.later: list[str] = []

    def check(self, data: Mapping[str, Any]) -> None:
        self.node("", data, plain_schema())
        if self.later:
            raise ConfigError(self.later[0])

    def fail(self, path: str, message: str) -> None:
        link = next((p for p in self.links if path == p or path.startswith((f"{p}.", f"{p}["))), None)
        if link is None:
            raise ConfigError(message)
        self.later.append(f"{message} (from {link}: {self.links[link]})")

    def node(self, path: str, node: Mapping[str, Any], spec: Mapping[str, Spec]) -> None:
        for key, value in node.items():
            if key in spec:
                self.value(join_key(path, key), value, spec[key])
            else:
                self.unknown(join_key(path, key), value, path, list(spec))

    def value(self, path: str, value: Any, spec: Spec) -> None:
        if isinstance(spec, str) and spec.rstrip("?") not in ("target", "targets"):
            if spec != "any" and not allowed_of(spec).accepts(value):
                self.wrong_type(path, value, allowed_of(spec), plain_examples().get(path))
        elif value is None and isinstance(spec, str) and spec.endswith("?"):
            return
        elif not isinstance(value, Mapping):
            what = "a group of keys" if isinstance(spec, dict) else "an object config with _target_"
            self.fail(path, f"{path} must be {what}, got {show(value)}")
        elif isinstance(spec, dict):
            self.node(path, value, spec)
        elif spec.startswith("targets"):
            for key, child in value.items():
                self.value(join_key(path, key), child, "target")
        elif "_target_" not in value:
            self.fail(path, f"{path} needs a _target_ (the class to build), got keys {', '.join(value)}")
        else:
            self.target(path, value)

    def target(self, path: str, node: Mapping[str, Any]) -> None:
        target = str(node["_target_"])
        try:
            params, open_ended = signature_of(target)
        except Exception as err:  # ImportError, AttributeError, ...
            self.fail(path, f"{path}._target_={target} cannot be imported ({first_line(err)}); check the name")
            return
        for key, value in node.items():
            full = join_key(path, key)
            if key in params:
                self.parameter(full, value, params[key])
            elif key not in RESERVED and not open_ended:
                self.unknown(full, value, path, list(params), target=target)
            self.descend(full, value)

    def parameter(self, path: str, value: Any, param: tuple[Any, Any]) -> None:
        hint, default = param
        allowed, element = allowed_by(hint, default), element_allowed(hint)
        if isinstance(value, list) and element is not None:
            for i, item in enumerate(value):
                if not isinstance(item, Mapping | list) and not element.accepts(item):
                    self.wrong_type(f"{path}[{i}]", item, element, None)
        elif allowed is not None and not allowed.accepts(value):
            example = default if allowed.accepts(default) and default is not None else None
            self.wrong_type(path, value, allowed, example)
        elif element is not None and sequence_only(hint) and not isinstance(value, list | Mapping):
            if value is None and (default is None or type(None) in typing.get_args(hint)):
                return
            self.fail(path, f"{path} must be a list ({element.describe()} each), got {quote(value)}")

    def descend(self, path: str, value: Any) -> None:
        if isinstance(value, Mapping) and "_target_" in value:
            self.target(path, value)
        elif isinstance(value, Mapping):
            for key, child in value.items():
                self.descend(join_key(path, key), child)
        elif isinstance(value, list):
            for i, child in enumerate(value):
                self.descend(f"{path}[{i}]", child)

    def unknown(self, path: str, value: Any, node: str, known: list[str], target: str | None = None) -> None:
        parent, _, name = path.rpartition(".")
        near = did_you_mean(name, known)
        if path in MOVED:
            near = MOVED[path]
        elif target is None and name in FOREIGN:  # +num_rounds=5, Flower's name
            near = FOREIGN[name]
        elif near is not None:
            near = join_key(parent, near)
        elif target is None:  # a plain key put in the wrong node: +roundz=3 for federation.rounds
            leaves = {p.rpartition(".")[2]: p for p in reversed(self.paths) if p != path}
            near = leaves.get(did_you_mean(name, leaves, cutoff=0.75) or "")
        fix = f"did you mean {near}?{foreign_note(path, near)}" if near else "remove it"
        what = f"a parameter of {target}" if target else "a known key"
        takes = ", ".join(k for k in known if k not in RESERVED) or "nothing"
        self.fail(path, f"{path}={show(value)} is not {what}: {fix} ({node or 'the top level'} takes {takes})")

    def wrong_type(self, path: str, value: Any, allowed: Allowed, example: Any) -> None:
        fix = f": e.g. {path}={show(example)}" if example is not None and not allowed.choices else ""
        self.fail(path, f"{path} must be {allowed.describe()}, got {quote(value)}{fix}")


def check_keys(raw: Mapping[str, Any], data: Mapping[str, Any]) -> None:
    """Check every key of the resolved config ``data``; ``raw``, the same config unresolved, names interpolations.

    Raises:
        ConfigError: At the first bad key (one whose value is interpolated: only when no other key is bad).

    """
    _Checker(raw).check(data)


def _items(path: str, value: Any) -> Iterator[tuple[str, Any]]:
    """Every dotted key of a nested mapping, with its value."""
    if isinstance(value, Mapping):
        for key, child in value.items():
            yield join_key(path, key), child
            yield from _items(join_key(path, key), child)
