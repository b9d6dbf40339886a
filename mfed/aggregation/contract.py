"""What the stages of a round's fold need from one another, and the combinations that cannot hold.

A round's fold is route -> bound -> combine -> server step (:mod:`mfed.aggregation.fold`). Every
stage says what it needs of the others and what it gives; a stage may also *void* something
another needs (and say why). :func:`check` derives the refusals from these declarations alone,
before anything starts, and names both config keys in one line. No stage reads another's flags.

The capabilities:

- ``folds``: clients' updates are routed into shared scopes (a strategy that averages nothing,
  Local or the centralised reference, does not give it).
- ``updates``: the server sees each client's update on its own and in the clear (every strategy's
  route gives it; a secure aggregation, which releases only sums, would void it): clipping on the
  server, robust rules and FedHCA2 need it.
- ``parts``: the combine folds the routed, bounded parts of each update (a strategy that combines
  whole updates by a rule of its own, FedHCA2, voids it: clipping a part would bound nothing).
- ``means``: each folded scope's aggregate estimates the clients' mean, so its difference from the
  state sent is a pseudo-gradient a server step may use (a personalising combine voids it).
- ``bounded:<part>``: each scope's aggregate of ``<part>`` (``encoder``, ``decoder``) is a sum of
  the clients' routed contributions over a denominator fixed before the run, so clipping each
  client's contributions over all its scopes jointly bounds what one client moves, the
  sensitivity differential privacy's accountant assumes (an order statistic, or scopes whose
  members are not known before the run, void it).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

FOLDS, UPDATES, PARTS, MEANS = "folds", "updates", "parts", "means"
ORDER = (FOLDS, UPDATES, PARTS, MEANS)  # the order needs are checked in: the most basic first, then the bounds

WHAT = {
    FOLDS: "client updates routed into shared scopes",
    UPDATES: "each client's update on its own, in the clear",
    PARTS: "a combine of the routed and bounded parts",
    MEANS: "a mean per scope (its difference from the state sent is the pseudo-gradient)",
}


def bounded(part: str) -> str:
    """The capability that one client's contribution to ``part``'s sums is bounded by one clip."""
    return f"bounded:{part}"


ROUTED = frozenset({FOLDS, UPDATES, bounded("encoder"), bounded("decoder")})

"""What a strategy that routes each part of an update into one scope gives (the default route)."""


def describe(capability: str) -> str:
    """A capability in words, for a refusal."""
    if capability.startswith("bounded:"):
        return f"each client's {capability.removeprefix('bounded:')} bounded once per scope"
    return WHAT.get(capability, capability)


def _drop(key: str) -> str:
    """The override that leaves the stage ``key`` names out of the fold, for a refusal's advice.

    A config group with a ``none`` option is set to it (``privacy=none``: Hydra takes no null for
    a group); the strategy cannot be left out, only replaced; a plain key is set to null.
    """
    name = key.split("=")[0]
    if name in ("privacy", "defences", "server_optimizer", "secure_aggregation"):
        return f"{name}=none"
    if name.split(".")[0] == "aggregation":
        return "choose another aggregation=<option>"
    return f"{name}=null"


@dataclass(frozen=True)
class Declaration:
    """What one stage of a fold needs, gives and voids.

    Attributes:
        key: The config key (and value) the stage comes from, e.g. ``aggregation=fedhca2`` or
            ``defences.robust=median``; refusals name it.
        needs: Capabilities it cannot work without.
        gives: Capabilities it provides.
        voids: Capabilities it takes away, each with the reason in words.
        lacks: Why it does not give a capability another stage may expect (for the refusal).

    """

    key: str
    needs: frozenset[str] = frozenset()
    gives: frozenset[str] = frozenset()
    voids: Mapping[str, str] = field(default_factory=dict)
    lacks: Mapping[str, str] = field(default_factory=dict)


def check(declarations: Iterable[Declaration]) -> None:
    """Refuse, in one line naming both keys, a fold whose stages cannot hold together.

    A need fails when another stage voids it, or when no stage gives it; the line names the stage
    that needs it and the one that voids it (or lacks it: the first stage that says why it lacks it,
    else the first stage of the fold, the strategy).

    Raises:
        ValueError: The first need that fails.

    """
    stages = list(declarations)
    given = {c for s in stages for c in s.gives}
    for stage in stages:
        for need in sorted(stage.needs, key=lambda c: (ORDER.index(c) if c in ORDER else len(ORDER), c)):
            voiding = next((s for s in stages if need in s.voids and s is not stage), None)
            if voiding is not None:
                raise ValueError(
                    f"{stage.key} cannot go with {voiding.key}: it needs {describe(need)}, and "
                    f"{voiding.key} {voiding.voids[need]}; leave one out: {_drop(stage.key)}, or {_drop(voiding.key)}"
                )
            if need not in given:
                lacking = next((s for s in stages if need in s.lacks), stages[0])
                reason = lacking.lacks.get(need, f"gives no {describe(need)}")
                raise ValueError(
                    f"{stage.key} cannot go with {lacking.key}: it needs {describe(need)}, and {lacking.key} "
                    f"{reason}; leave {stage.key.split('=')[0]} out: {_drop(stage.key)}"
                )


def whole_updates(name: str, why: str) -> Declaration:
    """A strategy that combines whole updates by its own rule: it needs each in the clear and voids every mean.

    ``why`` says what it does with them, for the refusals of the stages that need a mean or a bounded part.
    """
    return Declaration(
        f"aggregation={name}", gives=ROUTED, needs=frozenset({UPDATES}),
        voids={PARTS: why, MEANS: why, bounded("encoder"): why, bounded("decoder"): why},
    )  # fmt: skip
