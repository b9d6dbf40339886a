"""The pieces suffice for one SecAgg round with a dropout: a toy run of the protocol's data flow, not the protocol."""

from __future__ import annotations

import os
from fractions import Fraction

import numpy as np
import torch

from mfed.secure import (
    KeyPair,
    Share,
    decode,
    encode,
    kdf_context,
    open_sealed,
    pairwise_mask,
    prg,
    reconstruct,
    ring_add,
    ring_sub,
    ring_sum,
    scale,
    seal,
    share,
    shared_key,
)

ROUND, SCOPE, B, BOUND, D, T = 7, "encoder", 32, 0.75, 50, 3
CLIENTS = (1, 2, 3, 4)  # client ids double as Shamir evaluation points


def test_a_round_with_one_dropout_decodes_to_the_survivors_sum():
    # Prepare: every client's two key pairs (sealing shares, pairwise masks), self-mask seed and update
    rng = np.random.default_rng(0)
    sealing = {u: KeyPair.generate() for u in CLIENTS}
    masking = {u: KeyPair.generate() for u in CLIENTS}
    self_seed = {u: os.urandom(32) for u in CLIENTS}
    updates = {u: torch.from_numpy(rng.uniform(-BOUND, BOUND, D)).float() for u in CLIENTS}
    mask_context = kdf_context("pairwise-mask", ROUND, SCOPE)

    def box(u, v):  # the key that seals what u sends v
        return sealing[u].shared_key(sealing[v].public, kdf_context("share-encryption", ROUND, SCOPE))

    def label(kind, u, v):  # the associated data of a message from u to v
        return kdf_context(kind, ROUND, SCOPE, u, v)

    # Execute: share keys -- each client shares its mask private key and self seed, sealed per receiver
    relayed, kept = {}, {}  # kept: the share of its own seed each client holds itself
    for u in CLIENTS:
        key_shares, seed_shares = share(masking[u].private, T, CLIENTS), share(self_seed[u], T, CLIENTS)
        for v, key_share, seed_share in zip(CLIENTS, key_shares, seed_shares, strict=True):
            if v == u:
                kept[u] = seed_share
            else:
                relayed[u, v] = (
                    seal(box(u, v), key_share.to_bytes(), label("mask-key", u, v)),
                    seal(box(u, v), seed_share.to_bytes(), label("self-seed", u, v)),
                )
    # masked input collection: client 4 drops before sending
    masked = {}
    for u in (1, 2, 3):
        y = ring_add(encode(updates[u], BOUND, B, len(CLIENTS)), prg(self_seed[u], D, B), B)
        for v in CLIENTS:
            if v != u:
                seed = masking[u].shared_key(masking[v].public, mask_context)
                y = ring_add(y, pairwise_mask(seed, D, B, 1 if u < v else -1), B)
        masked[u] = y
    total = ring_sum(list(masked.values()), B)
    # unmasking: survivors open what they hold -- the dropped client's mask-key shares, the survivors' seed shares
    survivors, dropped = (1, 2, 3), 4
    key_of_dropped = reconstruct(
        [Share.from_bytes(open_sealed(box(dropped, v), relayed[dropped, v][0], label("mask-key", dropped, v)))
         for v in survivors],
        T,
    )  # fmt: skip
    seeds_back = {}
    for u in survivors:
        opened = [
            kept[u] if v == u else Share.from_bytes(open_sealed(box(u, v), relayed[u, v][1], label("self-seed", u, v)))
            for v in survivors
        ]
        seeds_back[u] = reconstruct(opened, T)
        total = ring_sub(total, prg(seeds_back[u], D, B), B)
        pair_seed = shared_key(key_of_dropped, masking[u].public, mask_context)
        total = ring_sub(total, pairwise_mask(pair_seed, D, B, 1 if u < dropped else -1), B)
    decoded = decode(total, BOUND, B, len(CLIENTS), count=len(survivors))

    # Assert: the dropped client's mask key was recovered, and the sum is the survivors' within 3 / (2 s)
    assert KeyPair.from_private(key_of_dropped) == masking[dropped]
    assert all(seeds_back[u] == self_seed[u] for u in survivors)
    s = Fraction(scale(BOUND, B, len(CLIENTS)))
    for i in range(D):
        exact = sum(Fraction(updates[u].double()[i].item()) for u in survivors)
        assert abs(Fraction(decoded[i].item()) - exact) <= Fraction(3, 2) / s
