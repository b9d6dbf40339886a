"""Quantisation into the ring: the scale's definition, the error bound in exact arithmetic, masks, unbiasedness."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
import torch

from mfed.secure.masks import pairwise_mask, prg, ring_add, ring_sum
from mfed.secure.quantise import decode, encode, max_level, scale

BOUND = 0.75  # representable in float32, and not a power of two: s * bound is not an integer


def clipped_vectors(n: int, d: int, bound: float, seed: int) -> list[torch.Tensor]:
    """n float32 vectors uniform in [-bound, bound], each with the extremes +-bound at coordinates 0 and 1."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        x = torch.from_numpy(rng.uniform(-bound, bound, d)).float().clamp(-bound, bound)
        x[0], x[1] = bound, -bound
        out.append(x)
    return out


def assert_within(decoded: torch.Tensor, vectors: list[torch.Tensor], s: float, units: Fraction) -> None:
    """|decoded - exact sum| <= units / s + half an ulp of decoded, per coordinate, in exact rationals."""
    exact = [sum(Fraction(v) for v in column) for column in zip(*(x.double().tolist() for x in vectors), strict=True)]
    for i, (got, want) in enumerate(zip(decoded.tolist(), exact, strict=True)):
        allowed = units / Fraction(s) + abs(Fraction(got)) / 2**53
        assert abs(Fraction(got) - want) <= allowed, (i, got, float(want), float(allowed))


FITTING = [(b, n) for b in (2, 8, 16, 32, 62) for n in (1, 3, 10, 100) if n <= 2 ** (b - 1) - 1]


@pytest.mark.parametrize(("b", "n"), FITTING)
@pytest.mark.parametrize("bound", [1e-3, 0.37, BOUND, 1.0, 5.0, 1e4])
def test_the_scale_is_the_largest_power_of_two_that_keeps_n_sums_from_wrapping(b, n, bound):
    # Prepare: the definition, in exact rationals: K = floor((2^(b-1) - 1) / n)
    level = (2 ** (b - 1) - 1) // n

    # Execute
    s = scale(bound, b, n)

    # Assert: a power of two; s * bound <= K (so n |q| <= 2^(b-1) - 1); 2 s * bound > K (the largest)
    assert max_level(b, n) == level
    assert math.frexp(s)[0] == 0.5
    assert Fraction(s) * Fraction(bound) <= level < 2 * Fraction(s) * Fraction(bound)


@pytest.mark.parametrize("b", [16, 32, 62])
@pytest.mark.parametrize("n", [1, 10, 100])
def test_the_decoded_sum_is_within_n_over_2s_of_the_exact_sum(b, n):
    # Prepare
    vectors = clipped_vectors(n, 40, BOUND, seed=b * 1000 + n)
    s = scale(BOUND, b, n)

    # Execute
    total = ring_sum([encode(x, BOUND, b, n) for x in vectors], b)
    decoded = decode(total, BOUND, b, n, count=n)

    # Assert: rounding to nearest: at most 1/2 unit per summand, in exact arithmetic
    assert decoded.dtype == torch.float64 and decoded.shape == (40,)
    assert_within(decoded, vectors, s, Fraction(n, 2))


@pytest.mark.parametrize("b", [16, 32, 62])
@pytest.mark.parametrize("n", [1, 10, 100])
def test_the_stochastically_rounded_sum_is_within_n_over_s(b, n):
    # Prepare
    vectors = clipped_vectors(n, 40, BOUND, seed=7 + b + n)
    rng = np.random.default_rng(3)

    # Execute
    total = ring_sum([encode(x, BOUND, b, n, rng=rng) for x in vectors], b)

    # Assert
    assert_within(decode(total, BOUND, b, n, count=n), vectors, scale(BOUND, b, n), Fraction(n))


@pytest.mark.parametrize("b", [8, 16, 62])
@pytest.mark.parametrize("n", [1, 10, 100])
def test_n_summands_all_at_the_bound_do_not_wrap(b, n):
    for sign in (1.0, -1.0):
        # Prepare: the worst case, every coordinate of every summand at +bound (or -bound)
        vectors = [torch.full((5,), sign * BOUND) for _ in range(n)]

        # Execute
        decoded = decode(ring_sum([encode(x, BOUND, b, n) for x in vectors], b), BOUND, b, n, count=n)

        # Assert
        assert_within(decoded, vectors, scale(BOUND, b, n), Fraction(n, 2))


def test_fewer_summands_than_planned_decode_within_their_own_count():
    # Prepare: encoded for up to 100, only 7 summed (the others dropped out)
    vectors = clipped_vectors(7, 30, BOUND, seed=11)

    # Execute
    decoded = decode(ring_sum([encode(x, BOUND, 32, 100) for x in vectors], 32), BOUND, 32, 100, count=7)

    # Assert
    assert_within(decoded, vectors, scale(BOUND, 32, 100), Fraction(7, 2))


@pytest.mark.parametrize("b", [16, 32, 62])
def test_masked_encodings_sum_to_the_plain_sum(b):
    # Prepare: 10 clients, pairwise masks (u adds s_uv's stream for v > u, subtracts it for v < u)
    n, d = 10, 64
    vectors = clipped_vectors(n, d, BOUND, seed=b)
    rng = np.random.default_rng(b)
    seeds = {(u, v): rng.bytes(32) for u in range(n) for v in range(u + 1, n)}
    encoded = [encode(x, BOUND, b, n) for x in vectors]

    # Execute
    masked = []
    for u, y in enumerate(encoded):
        for v in range(n):
            if v != u:
                y = ring_add(y, pairwise_mask(seeds[min(u, v), max(u, v)], d, b, 1 if u < v else -1), b)
        masked.append(y)
    total = ring_sum(masked, b)

    # Assert: the masks cancel exactly, and the sum decodes within the bound
    assert np.array_equal(total, ring_sum(encoded, b))
    assert not any(np.array_equal(y, e) for y, e in zip(masked, encoded, strict=True))
    assert_within(decode(total, BOUND, b, n, count=n), vectors, scale(BOUND, b, n), Fraction(n, 2))


def test_stochastic_rounding_is_unbiased_and_rounding_to_nearest_is_not():
    # Prepare: b = 8, one summand, bound 1: K = 127, s = 64. Values a quarter, a tenth... of a step
    # off the grid, repeated over 4000 draws.
    b, draws = 8, 4000
    s = scale(1.0, b, 1)
    offsets = [0.1, 0.25, 0.5, 0.75, 0.9]
    x = torch.tensor([(j + offsets[j % 5]) / 64 for j in range(-60, 60, 3)], dtype=torch.float32)
    exact_units = np.array([float(Fraction(v) * Fraction(s)) for v in x.double().tolist()])
    rng = np.random.default_rng(5)

    # Execute: each draw decoded on its own (count=1 per coordinate)
    units = decode(encode(x.repeat(draws), 1.0, b, 1, rng=rng), 1.0, b, 1, count=1).numpy().reshape(draws, -1) * s
    nearest = decode(encode(x, 1.0, b, 1), 1.0, b, 1, count=1).numpy() * s

    # Assert: every draw is the floor or the ceiling; the mean is the exact value within 5 standard
    # errors sqrt(f (1 - f) / draws); rounding to nearest misses by about 0.1 unit or more everywhere
    assert np.all((units == np.floor(exact_units)) | (units == np.ceil(exact_units)))
    frac = exact_units - np.floor(exact_units)
    standard_error = np.sqrt(frac * (1 - frac) / draws)
    assert np.all(np.abs(units.mean(axis=0) - exact_units) <= 5 * standard_error)
    assert np.all(np.abs(nearest - exact_units) >= 0.09)  # float32 holds (j + 0.1) / 64 as j + 0.0999985
    assert abs(float((units.mean(axis=0) - exact_units).mean())) < 0.01 < float(np.abs(nearest - exact_units).mean())


def test_encode_flattens_any_float_tensor_and_decode_keeps_the_shape():
    # Prepare
    x = torch.tensor([[0.5, -0.25, 0.0], [0.125, -0.75, 0.75]], dtype=torch.float16)

    # Execute
    ring = encode(x, BOUND, 16, 4)

    # Assert: s = 2^13 here (0.75 * 2^13 = 6144 <= K = 8191 < 12288); -0.25 * 2^13 = -2048 = 2^16 - 2048
    assert ring.dtype == np.uint64 and ring.shape == (6,)
    assert scale(BOUND, 16, 4) == 2**13
    assert ring.tolist() == [4096, 2**16 - 2048, 0, 1024, 2**16 - 6144, 6144]
    assert decode(ring, BOUND, 16, 4, count=1).tolist() == [0.5, -0.25, 0.0, 0.125, -0.75, 0.75]


def test_values_beyond_the_bound_and_bad_settings_are_refused():
    x = torch.zeros(3)
    with pytest.raises(ValueError, match=r"encode got \|x\| = 0.75 > bound = 0.5: clip the update first"):
        encode(torch.tensor([0.1, -0.75]), 0.5, 16, 2)
    with pytest.raises(ValueError, match="not finite"):
        encode(torch.tensor([0.1, float("nan")]), 0.5, 16, 2)
    with pytest.raises(ValueError, match="an ulp above it"):
        encode(torch.tensor([0.3]).clamp(-0.3, 0.3), 0.3, 16, 2)  # float32(0.3) > 0.3
    with pytest.raises(TypeError, match="floating-point tensor"):
        encode(torch.zeros(3, dtype=torch.int64), 1.0, 16, 2)
    with pytest.raises(ValueError, match="a 2-bit ring cannot sum 2 values without wrapping"):
        encode(x, 1.0, 2, 2)
    with pytest.raises(ValueError, match=r"ring width b must be an int in 1\.\.62, got 64"):
        encode(x, 1.0, 64, 2)
    with pytest.raises(ValueError, match="bound must be a finite number > 0, got 0"):
        encode(x, 0, 16, 2)
    with pytest.raises(ValueError, match=r"count must be an int in \[0, n_summands=2\], got 3"):
        decode(np.zeros(3, np.uint64), 1.0, 16, 2, count=3)
    with pytest.raises(ValueError, match="not an element of Z_2\\^16"):
        decode(np.full(3, 2**16, np.uint64), 1.0, 16, 2, count=1)


def test_a_sum_whose_masks_did_not_cancel_is_caught_by_the_range_check_when_count_is_small():
    # Prepare: two encodings planned for up to 100 summands, one with a mask its partner never cancelled
    vectors = clipped_vectors(2, 1000, BOUND, seed=2)
    encoded = [encode(x, BOUND, 32, 100) for x in vectors]
    leftover = ring_add(encoded[0], prg(bytes(32), 1000, 32), 32)

    # Execute / Assert: |sum| <= 2 K covers 2% of the ring; uniform garbage leaves it
    assert decode(ring_sum(encoded, 32), BOUND, 32, 100, count=2).shape == (1000,)
    with pytest.raises(ValueError, match="beyond any sum of 2 encodings: masks that did not cancel"):
        decode(ring_sum([leftover, encoded[1]], 32), BOUND, 32, 100, count=2)
    assert decode(np.zeros(4, np.uint64), BOUND, 32, 100, count=0).tolist() == [0.0] * 4
