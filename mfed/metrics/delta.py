"""The multi-task performance delta against a reference (usually Local training).

Delta_m = (1/T) sum_t (-1)^{l_t} (M_t - M_ref,t) / M_ref,t x 100, with l_t = 1 where lower is
better (Maninis et al., 2019; Vandenhende et al., 2021). In federated multi-task learning it is
computed per client against that client's Local model, then averaged.
"""

from __future__ import annotations

from collections.abc import Mapping


def delta_m(scores: Mapping[str, float], reference: Mapping[str, float], lower_is_better: Mapping[str, bool]) -> float:
    """Mean relative gain over metrics, in percent (positive = better than the reference).

    Args:
        scores: Metric values of the method, by name.
        reference: The reference's values, by the same names.
        lower_is_better: Direction of each metric, by the same names.

    """
    keys, ref_keys, dir_keys = set(scores), set(reference), set(lower_is_better)
    if not keys or keys != ref_keys or keys != dir_keys:
        raise ValueError(
            f"delta_m needs the same metric names everywhere: scores {sorted(keys)}, "
            f"reference {sorted(ref_keys)}, directions {sorted(dir_keys)}"
        )
    zero = sorted(k for k in keys if reference[k] == 0)
    if zero:
        raise ValueError(f"delta_m: reference value of {zero} is 0, the relative change is undefined")
    total = sum((-1 if lower_is_better[k] else 1) * (scores[k] - reference[k]) / reference[k] for k in keys)
    return 100.0 * total / len(keys)
