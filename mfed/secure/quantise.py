"""Fixed-point quantisation of clipped float tensors into the ring ``Z_{2^b}``, and back from a sum.

Secure aggregation sums ring elements; model updates are floats. A client clips its update to
``[-bound, bound]`` per coordinate (the caller's job: :func:`encode` refuses anything outside),
scales it by ``s`` and rounds to an integer ``q``; the ring holds ``q mod 2^b`` (two's
complement). The server decodes the ring sum of up to ``n_summands`` such vectors back to a float sum.

**Derivation of the scale.** The decoded sum is read as a signed integer in
``[-(2^(b-1) - 1), 2^(b-1) - 1]``; it must not wrap. With every ``|q| <= K`` for an integer
``K``, the sum of ``n`` vectors lies in ``[-n K, n K]``, so ``K = floor((2^(b-1) - 1) / n)`` (the
*level*, :func:`max_level`) is the largest safe bound. Any ``s`` with ``s * bound <= K`` keeps
``|q| <= K``: ``|s x| <= K`` and rounding (to nearest, down or up) never crosses the integer ``K``.
The scale is the largest **power of two** that fits, ``s = 2^k`` with
``k = floor(log2(K / bound))`` (:func:`scale_exponent`), rather than ``K / bound`` itself: then
``s x`` is *exact* in float64 for every float32 or float64 ``x`` (scaling by ``2^k`` only moves
the exponent), so the rounding below is the only error even at ``b = 62``, where
``s x`` exceeds float64's 53-bit mantissa. It costs at most one bit of resolution (``s > K / (2 bound)``).

**Error bound.** Rounding to nearest (the default) moves each coordinate by at most ``1/2`` in
integer units, so for ``m`` summed vectors (``m <= n_summands``) the exact decoded sum ``Q / s``
satisfies ``|Q / s - sum x| <= m / (2 s)``; stochastic rounding (``rng`` given) moves each by
less than 1, so ``|Q / s - sum x| < m / s``. :func:`decode` returns ``Q / s`` as float64, which
adds at most half an ulp of the result (relative ``2^-53``), nothing when ``|Q| <= 2^53``.
Resolution per coordinate: ``1 / s < 2 bound / K``, about ``2 bound n / 2^(b-1)``.

**Stochastic rounding** rounds ``v = s x`` up with probability ``v - floor(v)``, so
``E[q] = v``: the decoded sum is unbiased (up to the ``2^-53`` granularity of the uniform draw).
Its randomness need not be secret: it hides nothing, the masks do.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from numpy.typing import NDArray

from mfed.secure.masks import Ring, check_bits, ring_mask


def max_level(b: int, n_summands: int) -> int:
    """``K = floor((2^(b-1) - 1) / n_summands)``: the largest ``|q|`` that ``n_summands`` can sum without wrapping.

    Args:
        b: The ring's bit width, ``2..62``.
        n_summands: The most vectors that will be summed, ``>= 1``.

    Raises:
        ValueError: ``b`` out of range, ``n_summands < 1``, or ``n_summands > 2^(b-1) - 1``
            (the ring is too narrow for even one level per summand).

    """
    check_bits(b)
    if isinstance(n_summands, bool) or not isinstance(n_summands, int) or n_summands < 1:
        raise ValueError(f"n_summands must be an int >= 1, got {n_summands!r}")
    level = (2 ** (b - 1) - 1) // n_summands
    if level < 1:
        raise ValueError(f"a {b}-bit ring cannot sum {n_summands} values without wrapping: need 2^(b-1) - 1 >= n")
    return level


def scale_exponent(bound: float, b: int, n_summands: int) -> int:
    """``k``, the scale being ``s = 2^k``: the largest ``k`` with ``2^k * bound <= max_level(b, n_summands)``.

    Args:
        bound: The clipping bound: every encoded coordinate lies in ``[-bound, bound]``; finite, ``> 0``.
        b: The ring's bit width, ``2..62``.
        n_summands: The most vectors that will be summed, ``>= 1``.

    Raises:
        ValueError: ``bound`` not finite and positive, ``2^k`` not a normal float64, or what
            :func:`max_level` refuses.

    """
    level = max_level(b, n_summands)
    if not (isinstance(bound, int | float) and math.isfinite(bound) and bound > 0):
        raise ValueError(f"bound must be a finite number > 0, got {bound!r}")
    bound = float(bound)
    k = math.floor(math.log2(level) - math.log2(bound))
    while math.ldexp(bound, k) > level:  # log2's rounding can be off by one either way: settle it exactly
        k -= 1
    while math.ldexp(bound, k + 1) <= level:
        k += 1
    if not -1022 <= k <= 1023:
        raise ValueError(f"bound={bound} gives the scale 2^{k}, outside float64's normal range")
    return k


def scale(bound: float, b: int, n_summands: int) -> float:
    """``s = 2^k`` (:func:`scale_exponent`): ring units per unit of the encoded floats.

    Args:
        bound: The clipping bound; finite, ``> 0``.
        b: The ring's bit width, ``2..62``.
        n_summands: The most vectors that will be summed, ``>= 1``.

    """
    return math.ldexp(1.0, scale_exponent(bound, b, n_summands))


def encode(x: torch.Tensor, bound: float, b: int, n_summands: int, rng: np.random.Generator | None = None) -> Ring:
    """Quantise a clipped float tensor into ``Z_{2^b}``: ``round(2^k x) mod 2^b``, flattened to 1-D.

    Args:
        x: A floating-point tensor (any shape, device or float dtype) with every value in ``[-bound, bound]``,
            compared exactly (clamping a float32 tensor to a bound float32 cannot represent, e.g. 0.3,
            can leave values an ulp above it: clamp in float64 or pick a representable bound).
        bound: The clipping bound; finite, ``> 0``; the same for every summand.
        b: The ring's bit width, ``2..62``; the same for every summand.
        n_summands: The most vectors that will be summed; the same for every summand.
        rng: ``None`` rounds to nearest (ties to even); a generator rounds stochastically
            (unbiased) with draws from it.

    Raises:
        TypeError: ``x`` is not a floating-point tensor.
        ValueError: A value outside ``[-bound, bound]`` or not finite (clip first), or what
            :func:`scale_exponent` refuses.

    """
    k = scale_exponent(bound, b, n_summands)
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise TypeError(f"encode takes a floating-point tensor, got {getattr(x, 'dtype', type(x).__name__)}")
    values = x.detach().to(device="cpu", dtype=torch.float64).reshape(-1).numpy()
    if not np.isfinite(values).all():
        raise ValueError("encode got a value that is not finite (NaN or infinite)")
    worst = float(np.abs(values).max(initial=0.0))
    if worst > bound:
        raise ValueError(
            f"encode got |x| = {worst!r} > bound = {bound!r}: clip the update first (a float32 clamp to a bound "
            "that float32 cannot represent can land an ulp above it: clamp in float64 or pick a representable bound)"
        )
    scaled = np.ldexp(values, k)  # exact: a power-of-two scaling
    if rng is None:
        rounded = np.rint(scaled)
    else:
        floor = np.floor(scaled)
        rounded = floor + (rng.random(scaled.shape) < scaled - floor)
    ints: NDArray[np.int64] = rounded.astype(np.int64)  # |q| <= K < 2^61: exact
    ring = ints.view(np.uint64)  # two's complement: q mod 2^64
    ring &= ring_mask(b)  # q mod 2^b
    return ring


def decode(sum_ring: Ring, bound: float, b: int, n_summands: int, count: int) -> torch.Tensor:
    """The float sum of ``count`` encoded vectors from their ring sum (masks cancelled): float64, same shape.

    Args:
        sum_ring: The sum modulo ``2^b`` of ``count`` outputs of :func:`encode`, masks cancelled.
        bound: The bound they were encoded with.
        b: The ring's bit width they were encoded with.
        n_summands: The ``n_summands`` they were encoded with.
        count: How many vectors were summed, ``0 <= count <= n_summands``.

    Raises:
        TypeError: ``sum_ring`` is not a ``uint64`` array.
        ValueError: ``count`` out of range; a value not below ``2^b``; or a value outside
            ``[-count K, count K]``, which no sum of ``count`` encodings reaches (masks that did
            not cancel, more summands than ``count``, or other settings than the encoder's). This
            is a range check, not an integrity check: when ``count`` is near ``n_summands`` it
            covers nearly the whole ring, and garbage passes.

    """
    k = scale_exponent(bound, b, n_summands)
    level = max_level(b, n_summands)
    if not isinstance(sum_ring, np.ndarray) or sum_ring.dtype != np.uint64:
        raise TypeError(f"decode takes a numpy uint64 array, got {getattr(sum_ring, 'dtype', type(sum_ring).__name__)}")
    if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= n_summands:
        raise ValueError(f"count must be an int in [0, n_summands={n_summands}], got {count!r}")
    if (sum_ring > ring_mask(b)).any():
        raise ValueError(f"decode got a value of {b + 1} bits or more: not an element of Z_2^{b}")
    ints = sum_ring.astype(np.int64)  # < 2^62: exact
    signed = np.where(sum_ring >= np.uint64(1 << (b - 1)), ints - (1 << b), ints)
    reach = count * level
    if signed.size and int(np.abs(signed).max()) > reach:
        raise ValueError(
            f"the ring sum reaches {int(np.abs(signed).max())} > {count} x {level}, beyond any sum of {count} "
            "encodings: masks that did not cancel, more summands than count, or other encoding settings"
        )
    return torch.from_numpy(np.ldexp(signed.astype(np.float64), -k))
