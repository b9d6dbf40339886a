"""Check a composed config before anything is built: unknown keys, value types, ``resume``, ``out_dir``.

:func:`check_config` raises :class:`ConfigError` with one line naming the full key, the bad value,
what is allowed and the fix. The keys of a ``_target_`` node are its target's constructor
parameters (read with :mod:`inspect`, typed by their annotations), so a new constructor argument
needs no change here. Nodes without ``_target_`` are declared in :data:`PLAIN`; a key that a YAML
file under configs/ adds is accepted too, typed by its value there (``null`` there: may be null).
"""

from __future__ import annotations

import copy
import difflib
import inspect
import os
import re
import types
import typing
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path, PurePath
from typing import Any, TypeAlias

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from mfed.config import config_dir


class ConfigError(ValueError):
    """A config value that cannot work; the message (one line) names the key, the value and the fix."""


class MissingRunError(ConfigError, FileNotFoundError):
    """``resume`` names no file or folder (a FileNotFoundError too, as a missing checkpoint is)."""


# A leaf: "int" | "float" | "bool" | "str" | "any" | "target" (a _target_ node) | "targets" (a mapping
# of _target_ nodes); a trailing "?" allows null. A dict is a plain node with these keys.
Spec: TypeAlias = "str | dict[str, Spec]"
# fmt: off
PLAIN: dict[str, Spec] = {
    "seed": "int", "out_dir": "str?", "storage": "str?", "name": "str?", "group": "str?", "resume": "str?",
    "mix_name": "str?", "tasks": "targets", "aggregation": "target", "backend": "target", "optimizer": "target",
    "logger": "target?", "model": {"encoder": "target", "decoder": "target"},
    "data": {
        "pool": "target", "test": "target?", "partition": "target", "channels": "int", "num_classes": "int",
        "num_parts": "int", "num_labels": "int", "depth_offset": "float", "val_fraction": "float",
        "min_per_client": "int",
    },
    "federation": {
        "rounds": "int", "clients_per_task": "int", "min_clients": "int", "fraction": "float",
        "local_epochs": "int", "batch_size": "int", "eval_every": "int", "torch_threads": "int",
        "accelerator": "str",
    },
    "sweep": {"name": "str", "grid": "any", "reference": "str?", "max_concurrent": "int"},
}
# fmt: on
RESERVED = ("_target_", "_partial_", "_recursive_", "_convert_", "_args_")
SCALARS = {bool: "bool", int: "int", float: "float", str: "str"}
WORDS = {"int": "an integer", "float": "a number", "bool": "true or false", "str": "a string"}
SYSTEM_DIRS = ("proc", "sys")
SEQUENCES = (list, tuple, Sequence, Iterable)


@dataclass(frozen=True)
class Allowed:
    """The scalar values a key takes: kinds (int/float/bool/str), choices (a Literal), null or not."""

    kinds: frozenset[str] = frozenset()
    nullable: bool = False
    choices: tuple[Any, ...] = ()
    strict: bool = False  # a _target_ parameter gets the value as is: no '3' for an int

    def accepts(self, value: Any) -> bool:
        """Whether ``value`` fits (or converts to) one of the kinds or choices."""
        if value is None:
            return self.nullable
        return value in self.choices or any(self._fits(kind, value) for kind in self.kinds)

    def _fits(self, kind: str, value: Any) -> bool:
        if isinstance(value, bool) or kind == "bool":
            return isinstance(value, bool) and kind in ("bool", "str")
        if isinstance(value, str):
            if kind == "str":
                return True
            return not self.strict and _parses(int if kind == "int" else float, value)
        if kind == "int":
            return isinstance(value, int) or (isinstance(value, float) and value.is_integer())
        return isinstance(value, int | float)  # kind float, or str: a number fits both

    def describe(self) -> str:
        """E.g. ``an integer``, ``a number or null``, ``one of 'pack', 'spread'``."""
        kinds = [k for k in WORDS if k in self.kinds and not (k == "int" and "float" in self.kinds)]
        parts = ([f"one of {', '.join(map(repr, self.choices))}"] if self.choices else []) + [WORDS[k] for k in kinds]
        return " or ".join(parts + (["null"] if self.nullable else []))


def _parses(kind: type, text: str) -> bool:
    try:
        kind(text)
    except ValueError:
        return False
    return True


def check_config(cfg: DictConfig) -> None:
    """Refuse unknown keys, values of the wrong type, a missing ``resume``, an unwritable ``out_dir``.

    Without ``out_dir`` (and not resuming) the run's folder is made under ``storage``: that is checked.

    Raises:
        ConfigError: One line: the full key, the bad value, what is allowed and the fix.

    """
    try:
        data: Any = OmegaConf.to_container(cfg, resolve=True)
    except OmegaConfBaseException as err:
        raise ConfigError(f"the config cannot be resolved: {_first_line(err)}") from None
    assert isinstance(data, dict)
    _Checker(OmegaConf.to_container(cfg, resolve=False)).check(data)  # type: ignore[arg-type]
    if data.get("resume") and "://" not in str(data["resume"]):
        check_resume(str(data["resume"]))
    # without out_dir (and not resuming) the run's folder is made under storage
    key = "out_dir" if data.get("out_dir") or data.get("resume") else "storage"
    if data.get(key) and "://" not in str(data[key]):
        check_writable(key, str(data[key]))


def check_resume(resume: str) -> None:
    """``resume`` must name an existing run directory or checkpoint file."""
    if not os.path.exists(os.path.expanduser(resume)):
        hint = f"no checkpoint at {resume}: give a run's output directory or its checkpoint.pt"
        raise MissingRunError(f"resume: no run at {resume} ({hint})")


def check_writable(key: str, value: str) -> None:
    """``value`` (a folder, maybe not there yet) can be created and written: not under /proc or /sys."""
    path = Path(os.path.abspath(os.path.expanduser(value)))
    for p in (path, Path(os.path.realpath(path))):
        if p.parts[1:2] and p.parts[1] in SYSTEM_DIRS:
            why = f"/{p.parts[1]} is a kernel file system"
            raise ConfigError(f"{key}={value} cannot be written: {why}; choose another folder")
    existing = path
    while not os.path.exists(existing) and existing != existing.parent:
        existing = existing.parent
    if not os.path.isdir(existing):
        raise ConfigError(f"{key}={value} cannot be written: {existing} is a file, not a folder; choose another folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"{key}={value} cannot be written: no write permission in {existing}; choose another folder")


def did_you_mean(name: str, known: Iterable[str], cutoff: float = 0.6) -> str | None:
    """The known name closest to ``name`` (:func:`difflib.get_close_matches`), or None when none is close."""
    match = difflib.get_close_matches(name, list(known), n=1, cutoff=cutoff)
    return match[0] if match else None


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
                self.value(_join(path, key), value, spec[key])
            else:
                self.unknown(_join(path, key), value, path, list(spec))

    def value(self, path: str, value: Any, spec: Spec) -> None:
        if isinstance(spec, str) and spec.rstrip("?") not in ("target", "targets"):
            if spec != "any" and not _allowed_of(spec).accepts(value):
                self.wrong_type(path, value, _allowed_of(spec), plain_examples().get(path))
        elif value is None and isinstance(spec, str) and spec.endswith("?"):
            return
        elif not isinstance(value, Mapping):
            what = "a group of keys" if isinstance(spec, dict) else "an object config with _target_"
            self.fail(path, f"{path} must be {what}, got {_show(value)}")
        elif isinstance(spec, dict):
            self.node(path, value, spec)
        elif spec.startswith("targets"):
            for key, child in value.items():
                self.value(_join(path, key), child, "target")
        elif "_target_" not in value:
            self.fail(path, f"{path} needs a _target_ (the class to build), got keys {', '.join(value)}")
        else:
            self.target(path, value)

    def target(self, path: str, node: Mapping[str, Any]) -> None:
        target = str(node["_target_"])
        try:
            params, open_ended = _signature(target)
        except Exception as err:  # ImportError, AttributeError, ...
            self.fail(path, f"{path}._target_={target} cannot be imported ({_first_line(err)}); check the name")
            return
        for key, value in node.items():
            full = _join(path, key)
            if key in params:
                self.parameter(full, value, params[key])
            elif key not in RESERVED and not open_ended:
                self.unknown(full, value, path, list(params), target=target)
            self.descend(full, value)

    def parameter(self, path: str, value: Any, param: tuple[Any, Any]) -> None:
        hint, default = param
        allowed, element = _allowed(hint, default), _element(hint)
        if isinstance(value, list) and element is not None:
            for i, item in enumerate(value):
                if not isinstance(item, Mapping | list) and not element.accepts(item):
                    self.wrong_type(f"{path}[{i}]", item, element, None)
        elif allowed is not None and not allowed.accepts(value):
            example = default if allowed.accepts(default) and default is not None else None
            self.wrong_type(path, value, allowed, example)
        elif element is not None and _sequence_only(hint) and not isinstance(value, list | Mapping):
            if value is None and (default is None or type(None) in typing.get_args(hint)):
                return
            self.fail(path, f"{path} must be a list ({element.describe()} each), got {_repr(value)}")

    def descend(self, path: str, value: Any) -> None:
        if isinstance(value, Mapping) and "_target_" in value:
            self.target(path, value)
        elif isinstance(value, Mapping):
            for key, child in value.items():
                self.descend(_join(path, key), child)
        elif isinstance(value, list):
            for i, child in enumerate(value):
                self.descend(f"{path}[{i}]", child)

    def unknown(self, path: str, value: Any, node: str, known: list[str], target: str | None = None) -> None:
        parent, _, name = path.rpartition(".")
        near = did_you_mean(name, known)
        if near is not None:
            near = _join(parent, near)
        elif target is None:  # a plain key put in the wrong node: +roundz=3 for federation.rounds
            leaves = {p.rpartition(".")[2]: p for p in reversed(self.paths) if p != path}
            near = leaves.get(did_you_mean(name, leaves, cutoff=0.75) or "")
        fix = f"did you mean {near}?" if near else "remove it"
        what = f"a parameter of {target}" if target else "a known key"
        takes = ", ".join(k for k in known if k not in RESERVED) or "nothing"
        self.fail(path, f"{path}={_show(value)} is not {what}: {fix} ({node or 'the top level'} takes {takes})")

    def wrong_type(self, path: str, value: Any, allowed: Allowed, example: Any) -> None:
        fix = f": e.g. {path}={_show(example)}" if example is not None and not allowed.choices else ""
        self.fail(path, f"{path} must be {allowed.describe()}, got {_repr(value)}{fix}")


def _allowed_of(spec: str) -> Allowed:
    return Allowed(frozenset([spec.rstrip("?")]), nullable=spec.endswith("?"))


def _allowed(hint: Any, default: Any = inspect.Parameter.empty, strict: bool = True) -> Allowed | None:
    """The scalars an annotation allows; None where it allows more (Any, containers): the constructor checks."""
    members = typing.get_args(hint) if _is_union(hint) else (hint,)
    kinds: set[str] = set()
    choices: list[Any] = []
    for member in members:
        if member in SCALARS:
            kinds.add(SCALARS[member])
        elif isinstance(member, type) and issubclass(member, PurePath):
            kinds.add("str")
        elif typing.get_origin(member) is typing.Literal:
            choices.extend(typing.get_args(member))
        elif not (member is type(None) or _opaque(member)):
            return None
    if not kinds and not choices:
        return None
    return Allowed(frozenset(kinds), type(None) in members or default is None, tuple(choices), strict)


def _element(hint: Any) -> Allowed | None:
    """For ``Sequence[int]``, ``tuple[int, int] | None``, ...: what each element allows."""
    for member in typing.get_args(hint) if _is_union(hint) else (hint,):
        args = [a for a in typing.get_args(member) if a is not Ellipsis]
        if typing.get_origin(member) in SEQUENCES and len(set(args)) == 1:
            return _allowed(args[0])
    return None


def _sequence_only(hint: Any) -> bool:
    """Whether every alternative of ``hint`` but None is a sequence type (a scalar cannot be right)."""
    members = [m for m in (typing.get_args(hint) if _is_union(hint) else (hint,)) if m is not type(None)]
    return all(typing.get_origin(m) in SEQUENCES for m in members)


def _is_union(hint: Any) -> bool:
    return typing.get_origin(hint) in (typing.Union, types.UnionType)


def _opaque(member: Any) -> bool:
    """A class no YAML value is (torch.Tensor, a Protocol): not a scalar's alternative, so ignored."""
    return isinstance(member, type) and member.__module__ not in ("builtins", "typing", "collections.abc")


@lru_cache(maxsize=256)
def _signature(target: str) -> tuple[dict[str, tuple[Any, Any]], bool]:
    """``{parameter: (annotation, default)}`` of the target's constructor, and whether it takes **kwargs."""
    from hydra.utils import get_object

    obj = get_object(target)
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):  # a builtin without a signature: the constructor checks
        return {}, True
    fn = obj.__init__ if inspect.isclass(obj) else obj
    namespace = getattr(inspect.unwrap(fn), "__globals__", {})
    params = {
        name: (_evaluate(p.annotation, namespace), p.default)
        for name, p in sig.parameters.items()
        if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    }
    return params, any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())


def _evaluate(annotation: Any, namespace: dict[str, Any]) -> Any:
    """A string annotation (``from __future__ import annotations``) as a type; Any when it cannot be."""
    if not isinstance(annotation, str):
        return Any if annotation is inspect.Parameter.empty else annotation
    try:
        return eval(annotation, dict(namespace))  # what typing.get_type_hints does, one parameter at a time
    except Exception:  # a name imported under TYPE_CHECKING only
        return Any


def plain_schema() -> dict[str, Spec]:
    """:data:`PLAIN` plus the plain keys that YAML files under configs/ add (typed by their values)."""
    return _plain_schema(str(config_dir()))


def plain_examples() -> dict[str, Any]:
    """A value from configs/ for each plain key (the first YAML file that sets it), for error messages."""
    return _yaml_keys(str(config_dir()))[1]


@lru_cache(maxsize=8)
def _plain_schema(root: str) -> dict[str, Spec]:
    schema: dict[str, Spec] = copy.deepcopy(PLAIN)
    for path, kinds in _yaml_keys(root)[0].items():
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
            elif isinstance(old, str) and "null" in kinds and not old.endswith("?"):
                node[parts[-1]] = old + "?"
    return schema


def _infer(kinds: set[str]) -> str:
    """One spec for the kinds of values YAML files give a key (an int and a float: a float)."""
    rest = kinds - {"null"} - ({"int"} if "float" in kinds else set())
    kind = rest.pop() if len(rest) == 1 else "any"
    return kind + "?" if "null" in kinds and kind != "any" else kind


@lru_cache(maxsize=8)
def _yaml_keys(root: str) -> tuple[dict[str, set[str]], dict[str, Any]]:
    """Every plain key that the YAML files under ``root`` set: its value kinds, and a first value."""
    kinds: dict[str, set[str]] = {}
    examples: dict[str, Any] = {}
    main = OmegaConf.to_container(OmegaConf.load(Path(root) / "config.yaml"))
    assert isinstance(main, dict)
    groups = {str(k).split()[-1].lstrip("/") for d in main.get("defaults", []) if isinstance(d, dict) for k in d}
    files = [("", Path(root) / "config.yaml")]
    for group in sorted(p for p in Path(root).iterdir() if p.is_dir()):
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
            yield from _leaves(_join(path, str(key)), child)
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


def _items(path: str, value: Any) -> Iterator[tuple[str, Any]]:
    """Every dotted key of a nested mapping, with its value."""
    if isinstance(value, Mapping):
        for key, child in value.items():
            yield _join(path, key), child
            yield from _items(_join(path, key), child)


def _join(path: str, key: Any) -> str:
    return f"{path}.{key}" if path else str(key)


def _repr(value: Any) -> str:
    """A bad value as the message quotes it: strings in quotes, the rest as an override writes it."""
    return _show(repr(value)) if isinstance(value, str) else _show(value)


def _show(value: Any, limit: int = 60) -> str:
    """A value as a command-line override would write it."""
    if value is None or isinstance(value, bool):
        text = {None: "null", True: "true", False: "false"}[value]
    else:
        text = str(value).replace(", ", ",").replace("'", "") if isinstance(value, list | dict) else str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _first_line(err: BaseException) -> str:
    return next((line.strip() for line in str(err).splitlines() if line.strip()), type(err).__name__)


def error_line(err: BaseException) -> str:
    """A config error (Hydra's, ours, a constructor's) as one line for the CLI."""
    from hydra.errors import MissingConfigException

    while not str(err).strip() and (err.__cause__ or err.__context__):
        err = err.__cause__ or err.__context__  # type: ignore[assignment]
    text = str(err)
    missing = getattr(err, "missing_cfg_file", None) or ""
    if isinstance(err, MissingConfigException) and err.options and "/" in missing:
        group, option = missing.rsplit("/", 1)
        return f"{group}={option}: there is no configs/{missing}.yaml; choose one of {', '.join(err.options)}"
    match = re.match(r"Could not override '([^']+)'", text)
    if match and isinstance(err.__cause__, OmegaConfBaseException):
        key = match.group(1)
        parent, _, name = key.rpartition(".")
        spec: Any = plain_schema()
        for part in parent.split(".") if parent else []:
            spec = spec.get(part) if isinstance(spec, dict) else None
        near = did_you_mean(name, spec) if isinstance(spec, dict) else None
        fix = f"did you mean {_join(parent, near)}?" if near else "check the name (mfed refuses unknown keys)"
        return f"{key} is not a known key: {fix}"
    return " ".join(line.strip() for line in text.splitlines() if line.strip()) or type(err).__name__
