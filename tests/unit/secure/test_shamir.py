"""Shamir sharing: the textbook vector, any t of n, t - 1 reveal nothing, the field, serialisation, refusals."""

from __future__ import annotations

import itertools
import random
from collections import Counter

import pytest
import sympy

from mfed.secure.shamir import (
    PRIME,
    Share,
    chunk_bytes,
    reconstruct,
    reconstruct_int,
    share,
    share_int,
)

# Wikipedia, "Shamir's secret sharing", the worked example over GF(1613): f(x) = 1234 + 166 x + 94 x^2,
# shares f(1..6). By hand, f(6) = 1234 + 996 + 3384 = 5614 = 3 * 1613 + 775.
WIKI_PRIME = 1613
WIKI_POINTS = [(1, 1494), (2, 329), (3, 965), (4, 176), (5, 1188), (6, 775)]


class Scripted(random.Random):
    """A generator whose ``randrange`` returns the given values in turn: the polynomial's coefficients."""

    def __init__(self, values):
        super().__init__(0)
        self.values = list(values)

    def randrange(self, *args, **kwargs):  # the arguments are ignored: the values are scripted
        return self.values.pop(0)


def test_the_default_field_is_m521_and_a_32_byte_secret_is_one_element():
    # Prepare / Execute
    shares = share(bytes(range(32)), 2, 3)

    # Assert: an independent primality test; 65 bytes fit under 2^520 < p
    assert PRIME == 2**521 - 1 and sympy.isprime(PRIME)
    assert chunk_bytes() == 65 and PRIME > 2 ** (8 * 65)
    assert all(len(s.ys) == 1 for s in shares)


def test_the_textbook_shares_reconstruct_1234_from_any_three():
    # Prepare / Execute / Assert: every 3 of the 6 published points, in any order
    for subset in itertools.permutations(WIKI_POINTS, 3):
        assert reconstruct_int(list(subset), 3, prime=WIKI_PRIME) == 1234


def test_sharing_with_the_textbook_polynomial_gives_the_textbook_shares():
    # Prepare: the coefficients 166 and 94 are what the generator yields
    rng = Scripted([166, 94])

    # Execute
    points = share_int(1234, 3, 6, rng=rng, prime=WIKI_PRIME)

    # Assert
    assert points == WIKI_POINTS


@pytest.mark.parametrize("secret", [bytes(range(32)), b"\x00\x00\x07", b"\xff", bytes(range(200)) + b"\x00"])
def test_any_t_of_n_shares_reconstruct_the_secret(secret):
    # Prepare: n = 5, every t and every subset of at least t shares, in shuffled order
    order = random.Random(1)
    for t in range(1, 6):
        shares = share(secret, t, 5, rng=random.Random(t))
        for k in range(t, 6):
            for subset in itertools.combinations(shares, k):
                picked = list(subset)
                order.shuffle(picked)
                # Execute / Assert
                assert reconstruct(picked, t) == secret


def test_shares_at_given_points_reconstruct_and_a_multi_chunk_secret_uses_one_polynomial_per_chunk():
    # Prepare: 131 bytes = 65 + 65 + 1 over M521
    secret = bytes(random.Random(2).randrange(256) for _ in range(131))
    xs = [3, 17, 99, 2**40, PRIME - 1]

    # Execute
    shares = share(secret, 3, xs)

    # Assert
    assert [s.x for s in shares] == xs and all(len(s.ys) == 3 and s.length == 131 for s in shares)
    assert reconstruct(shares[2:], 3) == secret
    assert reconstruct([shares[4], shares[0], shares[1]], 3) == secret


def test_fewer_than_t_shares_are_uniform_whatever_the_secret():
    # Prepare: GF(13), t = 3, parties at 1, 2 and 5. Enumerate every polynomial through the
    # sharing function itself (the coefficients scripted), for every secret.
    p, t, xs = 13, 3, [1, 2, 5]
    seen = {}

    # Execute: the distribution of the first t - 1 = 2 shares, per secret
    for secret in range(p):
        counts = Counter()
        for a1, a2 in itertools.product(range(p), repeat=2):
            points = share_int(secret, t, xs, rng=Scripted([a1, a2]), prime=p)
            counts[(points[0][1], points[1][1])] += 1
        seen[secret] = counts

    # Assert: every pair of share values occurs exactly once for every secret, so each observed
    # pair is consistent with every secret, equally often: the two shares say nothing about it
    every_pair = Counter({pair: 1 for pair in itertools.product(range(p), repeat=2)})
    assert all(counts == every_pair for counts in seen.values())


def test_the_secure_default_source_draws_fresh_polynomials():
    # Prepare / Execute: the same secret shared twice with the default (secrets) source
    first, second = share(b"k" * 32, 2, 3), share(b"k" * 32, 2, 3)

    # Assert: different shares (equal with probability 2^-521), the same secret
    assert first[0].ys != second[0].ys
    assert reconstruct(first[:2], 2) == reconstruct(second[1:], 2) == b"k" * 32


def test_shares_round_trip_through_bytes():
    # Prepare
    shares = share(bytes(range(70)), 2, [5, 2**33], rng=random.Random(3))

    # Execute
    wire = [s.to_bytes() for s in shares]

    # Assert: x (66 bytes) | length (4) | two elements (66 each)
    assert all(len(w) == 66 + 4 + 2 * 66 for w in wire)
    assert [Share.from_bytes(w) for w in wire] == shares
    assert reconstruct([Share.from_bytes(w) for w in wire], 2) == bytes(range(70))
    with pytest.raises(ValueError, match="a share of a 70-byte secret has 202 bytes, got 201"):
        Share.from_bytes(wire[0][:-1])
    with pytest.raises(ValueError, match="outside the field"):
        Share.from_bytes(PRIME.to_bytes(66, "big") + wire[0][66:])


def test_mixed_up_shares_of_two_secrets_are_refused_rather_than_misread():
    # Prepare: a 32-byte secret is one element far below p; mixing shares interpolates to a random element
    a = share(b"a" * 32, 2, 3, rng=random.Random(4))
    b = share(b"b" * 32, 2, 3, rng=random.Random(5))

    # Execute / Assert
    with pytest.raises(ValueError, match="interpolate to no 32-byte secret"):
        reconstruct([a[0], b[1]], 2)


def test_bad_arguments_are_refused_with_the_reason():
    shares = share(b"secret", 2, 3)
    with pytest.raises(ValueError, match="need at least t=2 shares to reconstruct, got 1"):
        reconstruct(shares[:1], 2)
    with pytest.raises(ValueError, match="must be distinct"):
        reconstruct([shares[0], shares[0]], 2)
    with pytest.raises(ValueError, match="must be distinct"):
        share(b"secret", 2, [1, 2, 1])
    with pytest.raises(ValueError, match="threshold t=4 exceeds the number of parties n=3"):
        share(b"secret", 4, 3)
    with pytest.raises(ValueError, match="threshold t must be at least 1, got 0"):
        share(b"secret", 0, 3)
    with pytest.raises(ValueError, match="threshold t must be at least 1, got 0"):
        reconstruct(shares, 0)
    with pytest.raises(ValueError, match=r"0 is the secret"):
        share(b"secret", 2, [0, 1])
    with pytest.raises(ValueError, match=r"evaluation points must lie in \[1, "):
        share(b"secret", 2, [1, PRIME])
    with pytest.raises(ValueError, match="must not be empty"):
        share(b"", 1, 2)
    with pytest.raises(ValueError, match="different lengths"):
        reconstruct([shares[0], share(b"other secret", 2, 3)[1]], 2)
    with pytest.raises(ValueError, match=r"the secret must lie in \[0, 13\)"):
        share_int(13, 2, 3, prime=13)
    with pytest.raises(ValueError, match="byte secrets need a prime above 256"):
        share(b"x", 2, 3, prime=WIKI_PRIME // 8)
