"""Masks for secure aggregation: a ChaCha20 PRG over the ring ``Z_{2^b}`` and the ring's arithmetic.

**The ring.** Masked vectors live in ``Z_{2^b}``, held as numpy ``uint64`` arrays with values
below ``2^b``, ``b`` in ``1..62`` (:data:`MAX_BITS`). Addition is numpy's ``uint64`` addition,
which wraps modulo ``2^64``, then a mask to ``b`` bits: since ``2^b`` divides ``2^64`` that is
addition modulo ``2^b``, exactly, for any number of terms. ``b <= 62`` keeps every element, and
the sum of two, below ``2^63``, so vectors survive a trip through a signed 64-bit integer (torch's
widest integer type) unchanged.

**The PRG** (:func:`prg`) expands a 32-byte seed into ``n`` ring elements: the ChaCha20 keystream
(RFC 8439, from ``cryptography``) under the seed as key, read as little-endian ``uint64`` words and
cut to their low ``b`` bits. Each word is uniform on ``[0, 2^64)`` and ``2^b`` divides ``2^64``, so
the low ``b`` bits are exactly uniform on ``Z_{2^b}``: no modulo bias, no rejection.

**The fixed nonce.** The keystream uses nonce 0 and block counter 0 (``cryptography``'s 16-byte
ChaCha20 nonce is a 4-byte little-endian block counter then RFC 8439's 12-byte nonce). A stream
cipher is only broken by using one (key, nonce) pair for two *different* streams; here every seed
is used for one stream only: pairwise seeds are derived by :func:`mfed.secure.keys.shared_key`
with a context naming the round, scope and purpose, and self-mask seeds are fresh random bytes
per round and scope. Both parties of a pair expand the same seed on purpose: that is what makes
their masks cancel. A nonce would add nothing but a second place to get uniqueness wrong.

**Pairwise masks** (:func:`pairwise_mask`): for a pair ``(u, v)`` with agreed seed ``s_uv``, one
adds ``PRG(s_uv)`` (``sign=+1``) and the other subtracts it (``sign=-1``), by whatever order the
protocol fixes (SecAgg: ``u < v`` adds), so the masks cancel in the pair's sum.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, CipherContext, algorithms
from numpy.typing import NDArray

SEED_BYTES = 32  # a PRG seed is a ChaCha20 key
MAX_BITS = 62  # the widest ring: elements and the sum of two stay below 2^63
MAX_VALUES = 2**32  # at most 2^32 words (32 GiB) per seed: far inside ChaCha20's 2^32 64-byte blocks
CHUNK_VALUES = 2**16  # the PRG writes the keystream in chunks of this many words (512 KiB)
WORD = np.dtype("<u8")  # keystream words are little-endian 64-bit

Ring = NDArray[np.uint64]


def check_bits(b: int) -> int:
    """``b`` if it is a supported ring width, ``1 <= b <= 62``.

    Args:
        b: The ring's bit width.

    Raises:
        ValueError: ``b`` is out of range (or not an int).

    """
    if isinstance(b, bool) or not isinstance(b, int) or not 1 <= b <= MAX_BITS:
        raise ValueError(f"the ring width b must be an int in 1..{MAX_BITS}, got {b!r}")
    return b


def ring_mask(b: int) -> np.uint64:
    """``2^b - 1``: the low ``b`` bits, as a ``uint64``.

    Args:
        b: The ring's bit width, ``1..62``.

    """
    return np.uint64((1 << check_bits(b)) - 1)


def keystream(key: bytes, n_bytes: int, *, counter: int = 0, nonce: bytes = bytes(12)) -> bytes:
    """``n_bytes`` of the ChaCha20 keystream (RFC 8439) for ``key``, starting at block ``counter``.

    Args:
        key: The 32-byte key.
        n_bytes: How many bytes.
        counter: The first 64-byte block's counter (RFC 8439's 32-bit block count).
        nonce: RFC 8439's 12-byte nonce.

    Raises:
        ValueError: A wrong key or nonce size, a negative length, or a counter outside 32 bits.

    """
    if n_bytes < 0:
        raise ValueError(f"n_bytes must be >= 0, got {n_bytes}")
    return _encryptor(key, counter, nonce).update(bytes(n_bytes))


def prg(seed: bytes, n: int, b: int) -> Ring:
    """Expand a 32-byte seed into ``n`` elements of ``Z_{2^b}``, uniform and deterministic in the seed.

    Element ``i`` is the ``i``-th little-endian 64-bit word of the seed's ChaCha20 keystream
    (nonce 0, counter 0), cut to its low ``b`` bits. A shorter expansion of a seed is a prefix of a
    longer one.

    Args:
        seed: The 32-byte seed, used for this one stream only (see the module doc).
        n: How many elements, ``0 <= n <= 2^32``.
        b: The ring's bit width, ``1..62``.

    Raises:
        ValueError: A seed that is not 32 bytes, ``n`` or ``b`` out of range.

    """
    mask = ring_mask(b)
    if not 0 <= n <= MAX_VALUES:
        raise ValueError(f"n must lie in [0, {MAX_VALUES}], got {n}")
    encryptor = _encryptor(seed, 0, bytes(12))
    out = np.empty(n, WORD)
    view = out.data.cast("B")  # the array's bytes: the keystream is written straight into it
    zeros = bytes(CHUNK_VALUES * WORD.itemsize)
    for start in range(0, n, CHUNK_VALUES):
        stop = min(start + CHUNK_VALUES, n)
        size = (stop - start) * WORD.itemsize
        encryptor.update_into(zeros[:size], view[start * WORD.itemsize : stop * WORD.itemsize])
    words = out.astype(np.uint64, copy=False)  # a no-op on little-endian machines
    words &= mask
    return words


def pairwise_mask(seed: bytes, n: int, b: int, sign: int) -> Ring:
    """``+PRG(seed)`` or ``-PRG(seed)`` in ``Z_{2^b}``: one side of a pair's cancelling masks.

    Args:
        seed: The pair's agreed 32-byte seed.
        n: The vector's length.
        b: The ring's bit width, ``1..62``.
        sign: ``+1`` (add the stream) or ``-1`` (subtract it).

    Raises:
        ValueError: ``sign`` is neither ``+1`` nor ``-1``, or what :func:`prg` refuses.

    """
    if sign not in (1, -1):
        raise ValueError(f"sign must be +1 or -1, got {sign!r}")
    stream = prg(seed, n, b)
    return stream if sign == 1 else ring_neg(stream, b)


def ring_add(x: Ring, y: Ring, b: int) -> Ring:
    """``(x + y) mod 2^b``, elementwise.

    Args:
        x: A ``uint64`` array (read modulo ``2^b``).
        y: A ``uint64`` array of the same shape.
        b: The ring's bit width, ``1..62``.

    Raises:
        TypeError: An array is not ``uint64``.
        ValueError: The shapes differ, or ``b`` is out of range.

    """
    mask = ring_mask(b)
    _check_pair(x, y)
    out = np.add(x, y)  # wraps modulo 2^64, which 2^b divides
    out &= mask
    return out


def ring_sub(x: Ring, y: Ring, b: int) -> Ring:
    """``(x - y) mod 2^b``, elementwise.

    Args:
        x: A ``uint64`` array (read modulo ``2^b``).
        y: A ``uint64`` array of the same shape.
        b: The ring's bit width, ``1..62``.

    Raises:
        TypeError: An array is not ``uint64``.
        ValueError: The shapes differ, or ``b`` is out of range.

    """
    mask = ring_mask(b)
    _check_pair(x, y)
    out = np.subtract(x, y)  # wraps modulo 2^64, which 2^b divides
    out &= mask
    return out


def ring_neg(x: Ring, b: int) -> Ring:
    """``(-x) mod 2^b``, elementwise.

    Args:
        x: A ``uint64`` array (read modulo ``2^b``).
        b: The ring's bit width, ``1..62``.

    Raises:
        TypeError: ``x`` is not ``uint64``.
        ValueError: ``b`` is out of range.

    """
    return ring_sub(np.zeros_like(x), x, b)


def ring_sum(vectors: Sequence[Ring], b: int) -> Ring:
    """``sum(vectors) mod 2^b``, elementwise: e.g. the server's sum of masked inputs.

    Args:
        vectors: One or more ``uint64`` arrays of one shape.
        b: The ring's bit width, ``1..62``.

    Raises:
        TypeError: An array is not ``uint64``.
        ValueError: No vectors, differing shapes, or ``b`` out of range.

    """
    mask = ring_mask(b)
    if not vectors:
        raise ValueError("ring_sum needs at least one vector")
    total = vectors[0].copy()
    _check_pair(total, total)
    for vector in vectors[1:]:
        _check_pair(total, vector)
        total += vector  # wraps modulo 2^64
    total &= mask
    return total


def _encryptor(key: bytes, counter: int, nonce: bytes) -> CipherContext:
    """A ChaCha20 keystream generator: ``cryptography``'s nonce is ``counter`` (4 bytes, LE) then ``nonce``."""
    if not isinstance(key, bytes) or len(key) != SEED_BYTES:
        size = len(key) if isinstance(key, bytes) else type(key).__name__
        raise ValueError(f"a ChaCha20 key (PRG seed) is {SEED_BYTES} bytes, got {size}")
    if len(nonce) != 12:
        raise ValueError(f"RFC 8439's ChaCha20 nonce is 12 bytes, got {len(nonce)}")
    if not 0 <= counter < 2**32:
        raise ValueError(f"the block counter is 32 bits, got {counter}")
    full_nonce = counter.to_bytes(4, "little") + nonce
    return Cipher(algorithms.ChaCha20(key, full_nonce), mode=None).encryptor()


def _check_pair(x: Ring, y: Ring) -> None:
    for a in (x, y):
        if not isinstance(a, np.ndarray) or a.dtype != np.uint64:
            raise TypeError(f"ring elements are numpy uint64 arrays, got {getattr(a, 'dtype', type(a).__name__)}")
    if x.shape != y.shape:
        raise ValueError(f"ring vectors differ in shape: {x.shape} vs {y.shape}")
