"""The multi-task performance delta against a reference (usually Local training).

PROTOCOL.md section 2 (Maninis et al., 2019; Vandenhende et al., 2021):
Delta_m = (1/T) sum_t (-1)^{l_t} (M_t - M_ref,t) / M_ref,t x 100, with l_t = 1 where lower is
better (RMSE, mErr). In federated multi-task learning it is computed per client against that
client's Local model, then averaged over clients.
"""

from __future__ import annotations

from collections.abc import Mapping


def _check_names(scores: Mapping[str, float], other: Mapping[str, object], what: str) -> None:
    missing, extra = sorted(set(scores) - set(other)), sorted(set(other) - set(scores))
    if missing or extra:
        raise ValueError(f"delta_m: {what} must name the same metrics as scores; missing {missing}, extra {extra}")


def delta_m(scores: Mapping[str, float], reference: Mapping[str, float], lower_is_better: Mapping[str, bool]) -> float:
    """Mean relative gain over metrics, in percent (positive = better than the reference).

    Args:
        scores: Metric values of the method, by name.
        reference: The reference's values, by the same names.
        lower_is_better: Direction of each metric, by the same names (True for RMSE, mErr).

    Returns:
        Delta_m in percent.

    Raises:
        ValueError: If ``scores`` is empty, the three mappings name different metrics, or a
            reference value is 0 (the relative change is undefined).

    """
    if not scores:
        raise ValueError("delta_m needs at least one metric, got empty scores")
    _check_names(scores, reference, "reference")
    _check_names(scores, lower_is_better, "lower_is_better")
    zero = sorted(k for k in scores if reference[k] == 0)
    if zero:
        raise ValueError(f"delta_m: reference value of {zero} is 0, the relative change is undefined")
    total = sum((-1 if lower_is_better[k] else 1) * (scores[k] - reference[k]) / reference[k] for k in scores)
    return 100.0 * total / len(scores)
