"""What a constructor parameter takes, read from its signature and type annotation."""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import PurePath
from typing import Any

SCALARS = {bool: "bool", int: "int", float: "float", str: "str"}
WORDS = {"int": "an integer", "float": "a number", "bool": "true or false", "str": "a string"}
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


def allowed_of(spec: str) -> Allowed:
    """What a plain schema leaf (``"int"``, ``"str?"``, ...) allows."""
    return Allowed(frozenset([spec.rstrip("?")]), nullable=spec.endswith("?"))


def allowed_by(hint: Any, default: Any = inspect.Parameter.empty, strict: bool = True) -> Allowed | None:
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


def element_allowed(hint: Any) -> Allowed | None:
    """For ``Sequence[int]``, ``tuple[int, int] | None``, ...: what each element allows."""
    for member in typing.get_args(hint) if _is_union(hint) else (hint,):
        args = [a for a in typing.get_args(member) if a is not Ellipsis]
        if typing.get_origin(member) in SEQUENCES and len(set(args)) == 1:
            return allowed_by(args[0])
    return None


def sequence_only(hint: Any) -> bool:
    """Whether every alternative of ``hint`` but None is a sequence type (a scalar cannot be right)."""
    members = [m for m in (typing.get_args(hint) if _is_union(hint) else (hint,)) if m is not type(None)]
    return all(typing.get_origin(m) in SEQUENCES for m in members)


def _is_union(hint: Any) -> bool:
    return typing.get_origin(hint) in (typing.Union, types.UnionType)


def _opaque(member: Any) -> bool:
    """A class no YAML value is (torch.Tensor, a Protocol): not a scalar's alternative, so ignored."""
    return isinstance(member, type) and member.__module__ not in ("builtins", "typing", "collections.abc")


@lru_cache(maxsize=256)
def signature_of(target: str) -> tuple[dict[str, tuple[Any, Any]], bool]:
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
