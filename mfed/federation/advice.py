"""Warnings about a run's settings that its first round already shows, each naming the key, its value and the fix.

A warning is not a fault: no client did anything wrong, the configuration did. The driver logs
it (WARNING), the console prints it under its round, and it is kept in ``driver.meta["warnings"]``
(checkpointed, so a resumed run still reports it) for ``summary.json`` and W&B's summary, as
``{"round", "setting", "message"}``.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping


def clip_stalls(
    clip_norm: float | None, clipped: float, parts: int, norms: Mapping[str, Iterable[float]] | None
) -> str | None:
    """Why ``defences.clip_norm`` stalls learning, when it clipped every routed part of a round; else ``None``.

    A bound below every update (honest ones included) shrinks all of them, so the model barely
    moves: in round 1 that is the setting, not an attack.

    Args:
        clip_norm: ``defences.clip_norm`` (``None``: off).
        clipped: Parts it clipped this round (``agg/clipped``).
        parts: Parts folded this round.
        norms: The accepted updates' norms per part (by ``kind/part``; the screen's record);
            ``None`` under DP, which withholds them (the advice then names none).

    """
    if clip_norm is None or parts == 0 or clipped < parts:
        return None
    where = (
        "(client/<id>/update_norm in history.json)"
        if norms is not None
        else "(withheld under privacy=dp; privacy.release_client_metrics=true logs them)"
    )
    values = sorted(n for ns in (norms or {}).values() for n in ns)
    seen = (
        f"; the smallest update of a part had norm {values[0]:.3g} (median {statistics.median(values):.3g})"
        if values
        else ""
    )
    return (
        f"defences.clip_norm={clip_norm:g} clipped all {parts} parts folded in round 1{seen}: it cuts every "
        "update, honest ones included, so learning stalls; raise defences.clip_norm to about the median update norm "
        f"{where}, or set it to null"
    )
