"""Privacy accounting of client-level DP-FedAvg with Google's ``dp-accounting`` (its RDP accountant).

Each round samples ``m`` of the federation's ``N`` clients uniformly without replacement (exactly
what :func:`mfed.federation.sampling.sample_clients` does) and releases the sum of their clipped
updates plus Gaussian noise. The analysis that fits that sampling is Wang, Balle and
Kasiviswanathan (AISTATS 2019, Theorem 27), which ``dp-accounting`` implements for
``SampledWithoutReplacementDpEvent``. It holds under *replace-one* adjacency: ``N`` is public and
neighbouring federations differ in one client's data. Replacing one clipped update by another
moves the sum by up to ``2 * clip_norm``, so the Gaussian event the accountant sees has noise
multiplier ``noise_multiplier / 2`` (the noise's standard deviation over that sensitivity). With
every client in every round (``m = N``) the event is that Gaussian alone, under the same relation.
Rounds compose; epsilon is read at the configured delta.
"""

from __future__ import annotations

import functools
import math

REPLACE_ONE_SENSITIVITY = 2.0
"""L2 sensitivity of a sum of updates clipped to norm 1 when one client's data is replaced."""


@functools.lru_cache(maxsize=4096)
def epsilon(noise_multiplier: float, clients: int, sampled: int, rounds: int, delta: float) -> float:
    """Epsilon at ``delta`` after ``rounds`` rounds of ``sampled`` of ``clients``, noise ``noise_multiplier * clip``.

    Raises:
        ValueError: A count or delta out of range (naming the key).

    """
    import dp_accounting as dpa
    from dp_accounting.rdp import rdp_privacy_accountant as rdp

    if not 0 < sampled <= clients or rounds < 0:
        raise ValueError(
            f"privacy accounting needs 0 < sampled <= clients and rounds >= 0, got {sampled}, {clients}, {rounds}"
        )
    if not 0 < delta < 1:
        raise ValueError(f"privacy.delta must lie in (0, 1), got {delta}")
    if rounds == 0:
        return 0.0
    if noise_multiplier <= 0:
        return math.inf
    gaussian = dpa.GaussianDpEvent(noise_multiplier / REPLACE_ONE_SENSITIVITY)
    event = gaussian if sampled == clients else dpa.SampledWithoutReplacementDpEvent(clients, sampled, gaussian)
    accountant = rdp.RdpAccountant(neighboring_relation=dpa.NeighboringRelation.REPLACE_ONE)
    accountant.compose(dpa.SelfComposedDpEvent(event, rounds))
    return float(accountant.get_epsilon(delta))


def calibrate(target_epsilon: float, clients: int, sampled: int, rounds: int, delta: float) -> float:
    """The smallest noise multiplier (3 significant digits, rounded up) whose epsilon after ``rounds`` is in budget.

    Bisection on the multiplier (epsilon falls as it grows), stopped once every multiplier left in
    the bracket rounds up to the same 3 digits: the answer of a bisection run to the end.
    """
    if not target_epsilon > 0:
        raise ValueError(f"privacy.target_epsilon must be > 0, got {target_epsilon}")
    low, high = 1e-3, 1.0
    while epsilon(high, clients, sampled, rounds, delta) > target_epsilon:
        low, high = high, high * 2
        if high > 1e6:
            raise ValueError(f"privacy.target_epsilon={target_epsilon} cannot be reached by any noise multiplier")
    for _ in range(60):  # the answer lies in (low, high]
        if _round_up(low * (1 + 1e-12)) == _round_up(high):
            break
        middle = (low + high) / 2
        low, high = (
            (middle, high) if epsilon(middle, clients, sampled, rounds, delta) > target_epsilon else (low, middle)
        )
    return _round_up(high)


def _round_up(value: float) -> float:
    """``value`` rounded up to 3 significant digits."""
    digits = 2 - math.floor(math.log10(value))
    return math.ceil(value * 10**digits) / 10**digits


def exhausted_at(
    target_epsilon: float, noise_multiplier: float, clients: int, sampled: int, rounds: int, delta: float
) -> int | None:
    """The first round after which epsilon exceeds ``target_epsilon``, or ``None`` when ``rounds`` stay within it."""
    if epsilon(noise_multiplier, clients, sampled, rounds, delta) <= target_epsilon:
        return None
    low, high = 0, rounds  # epsilon(low) <= target < epsilon(high): epsilon grows with the rounds
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (
            (middle, high)
            if epsilon(noise_multiplier, clients, sampled, middle, delta) <= target_epsilon
            else (low, middle)
        )
    return high
