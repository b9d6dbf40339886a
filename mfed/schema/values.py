"""The ranges of plain keys: a value of the right type that cannot work (``federation.fraction=2``, ``seed=-1``).

Checked by :func:`~mfed.schema.check_config` right after the types, so such a value is refused in
one line before a task, a model or the data is built. What needs more than the config (the
number of clients a ``min_clients`` count is compared with, the data pool's size) is checked
where that is known (:mod:`mfed.plan`, :func:`mfed.run.build_specs`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from mfed.schema.errors import ConfigError, quote, show

MAX_SEED = 2**32 - 1  # numpy's and Lightning's seeds: non-negative, 32 bits


@dataclass(frozen=True)
class Rule:
    """What a plain key's value must satisfy, in words for the refusal."""

    holds: Callable[[Any], bool]
    must: str  # "be >= 1", "lie in (0, 1]"
    meaning: str  # what the key sets, so the fix is clear


def at_least(low: int, meaning: str) -> Rule:
    """A whole number ``>= low``."""
    return Rule(lambda v: float(v) >= low, f"be >= {low}", meaning)


def share(meaning: str) -> Rule:
    """A fraction in (0, 1]."""
    return Rule(lambda v: 0 < float(v) <= 1, "lie in (0, 1]", meaning)


def _count_or_fraction(value: Any) -> bool:
    v = float(value)
    return 0 < v < 1 or (v >= 1 and v.is_integer())


# fmt: off
RULES: dict[str, Rule] = {
    "seed": Rule(lambda v: 0 <= int(v) <= MAX_SEED, f"lie in [0, {MAX_SEED}]", "numpy takes no negative seed"),
    "federation.rounds": at_least(1, "the rounds to run"),
    "federation.clients_per_task": at_least(1, "the clients holding each task (null: federation.groups says)"),
    "federation.fraction": share("the share of clients sampled per round"),
    "federation.eval_fraction": share("the share of clients an evaluation round scores"),
    "federation.min_clients": Rule(_count_or_fraction, "be a count >= 1 or a fraction in (0, 1)",
                                   "the accepted updates a round needs"),
    "federation.local_epochs": at_least(1, "each client's epochs per round"),
    "federation.batch_size": at_least(1, "the examples per batch"),
    "federation.eval_every": at_least(1, "rounds between evaluations"),
    "federation.torch_threads": at_least(1, "each client's torch threads"),
    "federation.max_retries": at_least(0, "retries of a lost client or a short round; 0: none"),
    "federation.round_timeout_s": Rule(lambda v: float(v) > 0, "be > 0 or null", "a round's time limit; null: none"),
    "federation.accelerator": Rule(lambda v: v in ("auto", "cpu", "gpu"), "be auto, cpu or gpu",
                                   "where clients train; auto: a GPU when the client has one"),
    "data.val_fraction": Rule(lambda v: 0 <= float(v) < 1, "lie in [0, 1)",
                              "each client's share held out for validation; 0: none"),
    "data.local_test_fraction": Rule(lambda v: 0 <= float(v) < 1, "lie in [0, 1)",
                                     "each client's share held out as its own test set (P-FL); 0: none"),
    "data.min_per_client": at_least(0, "the fewest examples a client holds"),
}
# fmt: on


def check_values(data: Mapping[str, Any], examples: Mapping[str, Any]) -> None:
    """Refuse a plain key whose value (of the right type, checked before) is out of its range.

    Args:
        data: The resolved config.
        examples: A working value per key (the shipped configs'), for the fix.

    Raises:
        ConfigError: ``<key> must <range>, got <value> (<what it sets>): e.g. <key>=<example>``.

    """
    for key, rule in RULES.items():
        value: Any = data
        for part in key.split("."):
            value = value.get(part) if isinstance(value, Mapping) else None
        if value is None or _holds(rule, value):
            continue
        example = examples.get(key)
        fix = f": e.g. {key}={show(example)}" if example is not None and _holds(rule, example) else ""
        raise ConfigError(f"{key} must {rule.must}, got {quote(value)} ({rule.meaning}){fix}")


def _holds(rule: Rule, value: Any) -> bool:
    try:
        return bool(rule.holds(value))
    except (TypeError, ValueError):  # a key typed "any" (from a YAML null) given a word
        return False
