"""Shamir secret sharing (Shamir, CACM 1979) of byte secrets over a prime field.

A secret ``s`` is the constant term of a random polynomial ``f`` of degree ``t - 1`` over
``GF(p)``; party ``x`` (a nonzero field element, the client's index 1..n by default) gets
``f(x)``. Any ``t`` shares give ``s = f(0)`` by Lagrange interpolation; any ``t - 1`` of them are
uniformly distributed whatever ``s`` is, so they reveal nothing about it (for every candidate
secret exactly one polynomial fits them).

**The field.** By default ``p = 2^521 - 1`` (the Mersenne prime M521, the field of NIST P-521): a
well-known prime whose primality nobody need take on trust, and large enough that a 32-byte key
or seed -- what SecAgg shares -- is one field element. A byte secret is cut into big-endian chunks
of ``chunk_bytes(p) = (bit_length(p) - 1) // 8`` bytes (65 for M521), so every chunk is an integer
below ``2^(bit_length(p) - 1) < p``; each chunk is shared with its own independent polynomial at
the same points. Every function takes the prime as a parameter, so tests can use a tiny field
(e.g. the textbook example over ``GF(1613)``); the integer functions (:func:`share_int`,
:func:`reconstruct_int`) work over any prime, the byte functions need ``p > 256``.

The secret's length is public (it travels in each :class:`Share`): SecAgg shares fixed-size keys.
Shares are serialised with :meth:`Share.to_bytes` for sealing (:func:`mfed.secure.keys.seal`).
"""

from __future__ import annotations

import random
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

PRIME = 2**521 - 1  # M521, a Mersenne prime: a 32-byte (256-bit) secret is one field element
LENGTH_BYTES = 4  # Share.to_bytes: the secret's length as a 4-byte big-endian field

Point = tuple[int, int]  # (x, f(x)) over the field


@dataclass(frozen=True)
class Share:
    """One party's share of a byte secret.

    Args:
        x: The party's evaluation point, a nonzero field element (its client index).
        ys: ``f_c(x)`` for each chunk ``c`` of the secret, each in ``[0, p)``.
        length: The secret's length in bytes (public).

    """

    x: int
    ys: tuple[int, ...]
    length: int

    def to_bytes(self, prime: int = PRIME) -> bytes:
        """Serialise as ``x | length | ys``: ``x`` and each ``y`` as big-endian field elements.

        Args:
            prime: The field the share lives in (fixes the width of each element).

        Raises:
            ValueError: ``x`` or a ``y`` is not an element of the field, or the length does not fit.

        """
        width = element_bytes(prime)
        if not 0 < self.x < prime or any(not 0 <= y < prime for y in self.ys):
            raise ValueError(f"share at x={self.x} holds a value outside the field GF({prime})")
        if not 0 <= self.length < 2 ** (8 * LENGTH_BYTES):
            raise ValueError(f"secret length {self.length} does not fit {LENGTH_BYTES} bytes")
        parts = [self.x.to_bytes(width, "big"), self.length.to_bytes(LENGTH_BYTES, "big")]
        return b"".join(parts + [y.to_bytes(width, "big") for y in self.ys])

    @classmethod
    def from_bytes(cls, data: bytes, prime: int = PRIME) -> Share:
        """Parse what :meth:`to_bytes` wrote.

        Args:
            data: The serialised share.
            prime: The field the share lives in.

        Raises:
            ValueError: ``data`` has the wrong size for its secret's length, or holds a value
                outside the field.

        """
        width = element_bytes(prime)
        head = width + LENGTH_BYTES
        if len(data) < head:
            raise ValueError(f"a serialised share has at least {head} bytes, got {len(data)}")
        x = int.from_bytes(data[:width], "big")
        length = int.from_bytes(data[width:head], "big")
        chunks = _chunk_count(length, prime)
        if len(data) != head + chunks * width:
            raise ValueError(f"a share of a {length}-byte secret has {head + chunks * width} bytes, got {len(data)}")
        ys = tuple(int.from_bytes(data[head + i * width : head + (i + 1) * width], "big") for i in range(chunks))
        share = cls(x, ys, length)
        share.to_bytes(prime)  # validates x and ys against the field
        return share


def element_bytes(prime: int = PRIME) -> int:
    """Bytes needed to write any element of ``GF(prime)`` (66 for M521).

    Args:
        prime: The field's prime.

    """
    return (prime.bit_length() + 7) // 8


def chunk_bytes(prime: int = PRIME) -> int:
    """Bytes of a secret per field element: the most ``k`` with ``256^k <= 2^(bit_length - 1) < prime``.

    Args:
        prime: The field's prime.

    Raises:
        ValueError: The prime is too small to hold a byte (``prime <= 256``).

    """
    k = (prime.bit_length() - 1) // 8
    if k < 1:
        raise ValueError(f"byte secrets need a prime above 256, got {prime}; use share_int for tiny fields")
    return k


def share_int(
    secret: int, t: int, ids: int | Sequence[int], rng: random.Random | None = None, prime: int = PRIME
) -> list[Point]:
    """Split one field element into ``(x, f(x))`` points, any ``t`` of which recover it.

    Args:
        secret: The field element to share, in ``[0, prime)``.
        t: The threshold: the degree of ``f`` is ``t - 1``.
        ids: ``n`` (the points are ``1..n``) or the nonzero, distinct evaluation points.
        rng: Where the coefficients come from; ``None`` (the default, and the only choice outside
            tests) draws them from the operating system's secure source (:mod:`secrets`).
        prime: The field's prime.

    Raises:
        ValueError: ``t < 1``, ``t > n``, a point repeated, zero or outside the field, or the
            secret outside the field.

    """
    if not 0 <= secret < prime:
        raise ValueError(f"the secret must lie in [0, {prime}), got {secret}")
    xs = _points(ids, prime)
    _check_threshold(t, len(xs))
    draw = rng if rng is not None else secrets.SystemRandom()
    coefficients = [secret] + [draw.randrange(prime) for _ in range(t - 1)]
    return [(x, _evaluate(coefficients, x, prime)) for x in xs]


def reconstruct_int(points: Sequence[Point], t: int, prime: int = PRIME) -> int:
    """Recover ``f(0)`` from ``t`` of the points :func:`share_int` gave (the first ``t`` are used).

    Args:
        points: At least ``t`` points ``(x, f(x))`` with distinct nonzero ``x``.
        t: The threshold the secret was shared with.
        prime: The field's prime.

    Raises:
        ValueError: ``t < 1``, fewer than ``t`` points, or a point repeated, zero or outside the field.

    """
    _check_enough(len(points), t)
    xs = _points([x for x, _ in points], prime)
    if any(not 0 <= y < prime for _, y in points):
        raise ValueError(f"a share value lies outside the field GF({prime})")
    weights = _lagrange_at_zero(xs[:t], prime)
    return sum(w * y for w, (_, y) in zip(weights, points[:t], strict=True)) % prime


def share(
    secret: bytes, t: int, ids: int | Sequence[int], rng: random.Random | None = None, prime: int = PRIME
) -> list[Share]:
    """Split a byte secret into shares, any ``t`` of which recover it and ``t - 1`` reveal nothing.

    Args:
        secret: The secret (e.g. a 32-byte key or seed); not empty.
        t: The threshold, ``1 <= t <= n``.
        ids: ``n`` (shares for points ``1..n``) or the parties' nonzero, distinct points.
        rng: Where the polynomials' coefficients come from; ``None`` (the default, and the only
            choice outside tests) draws them from :mod:`secrets`.
        prime: The field's prime (default M521), above 256.

    Raises:
        ValueError: An empty secret, ``t < 1``, ``t > n``, or a point repeated, zero or outside the field.

    """
    if not secret:
        raise ValueError("the secret must not be empty")
    xs = _points(ids, prime)
    _check_threshold(t, len(xs))
    per_chunk = [share_int(chunk, t, xs, rng, prime) for chunk in _chunks(secret, prime)]
    return [Share(x, tuple(points[i][1] for points in per_chunk), len(secret)) for i, x in enumerate(xs)]


def reconstruct(shares: Sequence[Share], t: int, prime: int = PRIME) -> bytes:
    """Recover a byte secret from ``t`` of its shares (the first ``t`` are used, the rest ignored).

    Args:
        shares: At least ``t`` shares of one secret, at distinct points.
        t: The threshold the secret was shared with.
        prime: The field's prime.

    Raises:
        ValueError: ``t < 1``, fewer than ``t`` shares, a point repeated, zero or outside the
            field, shares of differently sized secrets, or shares that interpolate to something
            no secret of that length encodes to (shares of different secrets mixed up).

    """
    _check_enough(len(shares), t)
    xs = _points([s.x for s in shares], prime)
    length = shares[0].length
    chunks = _chunk_count(length, prime)
    if any(s.length != length or len(s.ys) != chunks for s in shares):
        raise ValueError("the shares belong to secrets of different lengths")
    if any(not 0 <= y < prime for s in shares for y in s.ys):
        raise ValueError(f"a share value lies outside the field GF({prime})")
    weights = _lagrange_at_zero(xs[:t], prime)
    size = chunk_bytes(prime)
    out = []
    for c in range(chunks):
        value = sum(w * s.ys[c] for w, s in zip(weights, shares[:t], strict=True)) % prime
        width = min(size, length - c * size)
        try:
            out.append(value.to_bytes(width, "big"))
        except OverflowError:
            raise ValueError(
                f"the shares interpolate to no {length}-byte secret: shares of different secrets mixed up?"
            ) from None
    return b"".join(out)


def _chunks(secret: bytes, prime: int) -> list[int]:
    size = chunk_bytes(prime)
    return [int.from_bytes(secret[i : i + size], "big") for i in range(0, len(secret), size)]


def _chunk_count(length: int, prime: int) -> int:
    if length < 1:
        raise ValueError(f"a shared secret has at least one byte, got length {length}")
    return -(-length // chunk_bytes(prime))


def _points(ids: int | Sequence[int], prime: int) -> list[int]:
    """The evaluation points: ``1..n`` for an int, else the given ones checked nonzero, distinct, in the field."""
    xs = list(range(1, ids + 1)) if isinstance(ids, int) else [int(x) for x in ids]
    if not xs:
        raise ValueError("need at least one party")
    bad = [x for x in xs if not 0 < x < prime]
    if bad:
        raise ValueError(f"evaluation points must lie in [1, {prime - 1}] (0 is the secret), got {bad}")
    if len(set(xs)) != len(xs):
        raise ValueError(f"evaluation points must be distinct, got duplicates in {sorted(xs)}")
    return xs


def _check_threshold(t: int, n: int) -> None:
    if t < 1:
        raise ValueError(f"the threshold t must be at least 1, got {t}")
    if t > n:
        raise ValueError(f"the threshold t={t} exceeds the number of parties n={n}")


def _check_enough(count: int, t: int) -> None:
    if t < 1:
        raise ValueError(f"the threshold t must be at least 1, got {t}")
    if count < t:
        raise ValueError(f"need at least t={t} shares to reconstruct, got {count}")


def _evaluate(coefficients: Sequence[int], x: int, prime: int) -> int:
    """``f(x)`` by Horner's rule, coefficients from the constant term up."""
    value = 0
    for c in reversed(coefficients):
        value = (value * x + c) % prime
    return value


def _lagrange_at_zero(xs: Sequence[int], prime: int) -> list[int]:
    """The weights ``l_i(0) = prod_{j != i} x_j / (x_j - x_i)`` so that ``f(0) = sum_i l_i(0) f(x_i)``."""
    weights = []
    for i, xi in enumerate(xs):
        numerator, denominator = 1, 1
        for j, xj in enumerate(xs):
            if j != i:
                numerator = numerator * xj % prime
                denominator = denominator * (xj - xi) % prime
        weights.append(numerator * pow(denominator, -1, prime) % prime)
    return weights
