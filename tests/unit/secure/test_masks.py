"""The PRG and the ring: RFC 8439 ChaCha20 vectors, words read by hand, uniformity, cancelling masks."""

from __future__ import annotations

import numpy as np
import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from scipy.stats import chisquare

from mfed.secure.masks import (
    CHUNK_VALUES,
    keystream,
    pairwise_mask,
    prg,
    ring_add,
    ring_neg,
    ring_sub,
    ring_sum,
)

RFC_KEY = bytes(range(32))
# RFC 8439, section 2.3.2: the block function, counter 1
BLOCK_NONCE = bytes.fromhex("000000090000004a00000000")
BLOCK = bytes.fromhex(
    "10f1e7e4d13b5915500fdd1fa32071c4c7d1f4c733c068030422aa9ac3d46c4e"
    "d2826446079faa0914c2d705d98b02a2b5129cd1de164eb9cbd083e8a2503c4e"
)
# RFC 8439, section 2.4.2: encryption, counter 1
CIPHER_NONCE = bytes.fromhex("000000000000004a00000000")
SUNSCREEN = (
    b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, "
    b"sunscreen would be it."
)
CIPHERTEXT = bytes.fromhex(
    "6e2e359a2568f98041ba0728dd0d6981e97e7aec1d4360c20a27afccfd9fae0b"
    "f91b65c5524733ab8f593dabcd62b3571639d624e65152ab8f530c359f0861d8"
    "07ca0dbf500d6a6156a38e088a22b65e52bc514d16ccf806818ce91ab7793736"
    "5af90bbf74a35be6b40b8eedf2785e42874d"
)
SEED = bytes(range(100, 132))


def words_by_hand(stream: bytes, b: int) -> list[int]:
    """Little-endian 64-bit words of a byte string, cut to b bits, with Python integers."""
    return [int.from_bytes(stream[i : i + 8], "little") % 2**b for i in range(0, len(stream), 8)]


def test_the_library_nonce_is_a_little_endian_counter_then_rfc_8439_nonce():
    # Prepare: cryptography's 16-byte ChaCha20 nonce = 4-byte LE block counter + 12-byte nonce
    nonce16 = (1).to_bytes(4, "little") + BLOCK_NONCE

    # Execute
    block = Cipher(algorithms.ChaCha20(RFC_KEY, nonce16), mode=None).encryptor().update(bytes(64))

    # Assert
    assert block == BLOCK


def test_the_keystream_gives_rfc_8439_block_and_ciphertext():
    # Prepare / Execute
    block = keystream(RFC_KEY, 64, counter=1, nonce=BLOCK_NONCE)
    stream = keystream(RFC_KEY, len(SUNSCREEN), counter=1, nonce=CIPHER_NONCE)

    # Assert
    assert block == BLOCK
    assert bytes(p ^ k for p, k in zip(SUNSCREEN, stream, strict=True)) == CIPHERTEXT


@pytest.mark.parametrize("b", [1, 5, 32, 62])
def test_the_prg_is_the_keystream_from_counter_0_read_as_words(b):
    # Prepare: n crosses the chunk boundary
    n = CHUNK_VALUES + 3
    stream = keystream(SEED, 8 * n)

    # Execute
    values = prg(SEED, n, b)

    # Assert: the words around the boundary by hand, the rest by numpy; dtype and range
    assert values.dtype == np.uint64 and values.shape == (n,)
    edge = slice(CHUNK_VALUES - 2, n)
    assert values[edge].tolist() == words_by_hand(stream[8 * edge.start :], b)
    assert values[:64].tolist() == words_by_hand(stream[: 8 * 64], b)
    assert np.array_equal(values, np.frombuffer(stream, "<u8") & np.uint64(2**b - 1))


def test_the_prg_is_deterministic_prefix_stable_and_seed_dependent():
    # Prepare / Execute
    first, again, longer = prg(SEED, 1000, 32), prg(SEED, 1000, 32), prg(SEED, 5000, 32)
    other = prg(bytes(32), 1000, 32)

    # Assert: equal coordinates between two seeds occur with probability 2^-32 each
    assert np.array_equal(first, again) and np.array_equal(first, longer[:1000])
    assert np.count_nonzero(first == other) == 0
    assert prg(SEED, 0, 8).shape == (0,)


@pytest.mark.parametrize("b", [1, 3, 4, 13, 32, 62])
def test_the_prg_is_uniform_over_the_ring(b):
    # Prepare: 10^5 values of a fixed seed; buckets = their top and their low min(b, 4) bits
    values = prg(SEED, 100_000, b)
    width = min(b, 4)

    # Execute
    top = np.bincount((values >> np.uint64(b - width)).astype(np.int64), minlength=2**width)
    low = np.bincount((values & np.uint64(2**width - 1)).astype(np.int64), minlength=2**width)

    # Assert: chi-square against equal counts, and nothing at or above 2^b
    assert len(top) == len(low) == 2**width
    assert chisquare(top).pvalue > 1e-3 and chisquare(low).pvalue > 1e-3
    assert int(values.max()) < 2**b


def test_plus_and_minus_masks_cancel_exactly():
    # Prepare
    rng = np.random.default_rng(0)
    for b in (1, 16, 62):
        x = rng.integers(0, 2**b, 777, dtype=np.uint64)

        # Execute
        masked = ring_add(x, pairwise_mask(SEED, 777, b, +1), b)
        unmasked = ring_add(masked, pairwise_mask(SEED, 777, b, -1), b)

        # Assert
        assert np.array_equal(unmasked, x)
        assert not np.array_equal(masked, x)


def test_pairwise_masks_of_five_clients_cancel_in_their_sum():
    # Prepare: SecAgg's convention, u adds s_uv's stream for v > u and subtracts it for v < u
    b, n, clients = 20, 300, range(5)
    rng = np.random.default_rng(1)
    seeds = {(u, v): rng.bytes(32) for u in clients for v in clients if u < v}
    inputs = [rng.integers(0, 2**b, n, dtype=np.uint64) for _ in clients]

    # Execute
    masked = []
    for u in clients:
        y = inputs[u]
        for v in clients:
            if v != u:
                y = ring_add(y, pairwise_mask(seeds[min(u, v), max(u, v)], n, b, 1 if u < v else -1), b)
        masked.append(y)

    # Assert: the sum of the masked inputs is the inputs' sum mod 2^b, by Python integers
    expected = [sum(int(x[i]) for x in inputs) % 2**b for i in range(n)]
    assert ring_sum(masked, b).tolist() == expected
    assert not any(np.array_equal(y, x) for y, x in zip(masked, inputs, strict=True))


@pytest.mark.parametrize("b", [1, 7, 62])
def test_ring_arithmetic_matches_python_integers_including_the_wrap(b):
    # Prepare: edge values of the ring, all pairs
    edges = sorted({0, 1, 2 ** (b - 1), 2**b - 1, max(2**b - 2, 0)})
    x = np.array([p for p in edges for _ in edges], dtype=np.uint64)
    y = np.array([q for _ in edges for q in edges], dtype=np.uint64)

    # Execute / Assert
    assert ring_add(x, y, b).tolist() == [(int(p) + int(q)) % 2**b for p, q in zip(x, y, strict=True)]
    assert ring_sub(x, y, b).tolist() == [(int(p) - int(q)) % 2**b for p, q in zip(x, y, strict=True)]
    assert ring_neg(x, b).tolist() == [(-int(p)) % 2**b for p in x]
    many = [np.full(3, 2**b - 1, dtype=np.uint64)] * 1000  # 1000 (2^b - 1) = -1000 mod 2^b
    assert ring_sum(many, b).tolist() == [(1000 * (2**b - 1)) % 2**b] * 3


def test_bad_arguments_are_refused():
    x = np.zeros(3, np.uint64)
    with pytest.raises(ValueError, match=r"b must be an int in 1\.\.62, got 63"):
        prg(SEED, 3, 63)
    with pytest.raises(ValueError, match=r"b must be an int in 1\.\.62, got 0"):
        ring_add(x, x, 0)
    with pytest.raises(ValueError, match="PRG seed\\) is 32 bytes, got 16"):
        prg(SEED[:16], 3, 8)
    with pytest.raises(ValueError, match="sign must be \\+1 or -1, got 0"):
        pairwise_mask(SEED, 3, 8, 0)
    with pytest.raises(TypeError, match="numpy uint64 arrays, got int64"):
        ring_add(x, np.zeros(3, np.int64), 8)
    with pytest.raises(ValueError, match="differ in shape"):
        ring_sub(x, np.zeros(4, np.uint64), 8)
    with pytest.raises(ValueError, match="at least one vector"):
        ring_sum([], 8)
    with pytest.raises(ValueError, match="block counter is 32 bits"):
        keystream(SEED, 8, counter=2**32)
