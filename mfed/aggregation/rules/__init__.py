"""Robust rules for ``defences.robust``: an open set, one module each.

A rule is an order statistic over clients' states (coordinate-wise, unweighted). ``defences.robust``
names a module of this package (``median``, ``trimmed_mean``) or, with a dot, any importable module
of the user's own (``mypkg.rules.krum``); the module's ``rule(defences)`` returns a
:class:`RobustRule`. A new rule is one file with that function; nothing else changes.
"""

from __future__ import annotations

import importlib
import pkgutil
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

from mfed.types import State


class RobustRule(ABC):
    """An order statistic over states with the same keys and shapes.

    Attributes:
        name: The value of ``defences.robust`` that selected it.

    """

    name: str = "rule"

    @abstractmethod
    def __call__(self, states: Sequence[State]) -> State:
        """The states combined, coordinate by coordinate."""

    @abstractmethod
    def least(self) -> int | None:
        """The fewest states from which it leaves out one extreme value (``None``: it never does)."""


def available() -> list[str]:
    """The rules shipped with mfed (the modules of this package)."""
    return sorted(m.name for m in pkgutil.iter_modules(__path__))


def load(name: str, options: Any) -> RobustRule:
    """The rule ``name`` (a module of this package, or a dotted module path), built from ``options`` (the defences).

    Raises:
        ValueError: No such module, or it has no ``rule`` function.

    """
    module_name = name if "." in name else f"{__name__}.{name}"
    named = bool(name) and name.replace(".", "").replace("_", "").isalnum()
    try:
        module = importlib.import_module(module_name) if named else None
    except ModuleNotFoundError:
        module = None
    build = getattr(module, "rule", None)
    if build is None:
        raise ValueError(
            f"defences.robust must be null, one of {available()}, or an importable module with a "
            f"rule(defences) function (a new rule: one file in mfed/aggregation/rules/), got {name!r}"
        )
    rule = build(options)
    rule.name = name
    return rule
