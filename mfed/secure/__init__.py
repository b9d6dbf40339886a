"""Building blocks of secure aggregation: SecAgg (Bonawitz et al., CCS 2017) and SecAgg+ (Bell et al., CCS 2020).

What is here (pure functions and small value types, each module one concept, no federation code):

- :mod:`mfed.secure.shamir`: Shamir ``t``-of-``n`` sharing of byte secrets (keys, seeds) over
  ``GF(2^521 - 1)``; shares serialise to bytes for sealing.
- :mod:`mfed.secure.keys`: X25519 key pairs, agreed keys (HKDF-SHA256 with a context naming round,
  scope and purpose), and ChaCha20-Poly1305 sealing of shares relayed by the server
  (:class:`~mfed.secure.keys.TamperedShare` on failed authentication).
- :mod:`mfed.secure.masks`: a ChaCha20 PRG from a 32-byte seed to uniform vectors of ``Z_{2^b}``
  (``b <= 62``, numpy ``uint64``), pairwise masks that cancel, and the ring's arithmetic.
- :mod:`mfed.secure.quantise`: fixed-point encoding of clipped float tensors into the ring so
  that the sum of up to ``n_summands`` encodings does not wrap, and decoding of that sum, with
  a stated error bound; rounding to nearest or stochastic (unbiased).

What is not here yet (the protocol work):

- The protocol's rounds per aggregation scope: advertise keys (two pairs per client: one to seal
  shares, one for pairwise masks), share keys (Shamir shares of the mask private key and of a
  fresh self-mask seed, sealed to each neighbour), masked input collection, unmasking.
- SecAgg+'s sparse neighbour graph (each client pairs with ``k = O(log n)`` others, threshold
  relative to ``k``), and the choice of ``t``.
- Dropouts: reconstructing a dropped client's pairwise masks from its mask private key, and
  survivors' self masks from their seeds; refusing to reveal both for one client.
- Wiring into the fold: per-scope ``n_summands``, flattening a state dict into one vector, the
  clipping bound shared with :mod:`mfed.aggregation.privacy`, weights (an example-weighted mean
  needs the weight folded in before encoding), and how robust defences, which inspect individual
  updates, give way.

Threat model these pieces assume: an honest-but-curious (semi-honest) server and clients. The
server follows the protocol and relays public keys and sealed shares faithfully but tries to learn
individual updates from what it sees; it learns only a scope's sum as long as fewer than ``t`` of
the clients holding a given client's shares collude with it. Not covered: an actively malicious
server (it could substitute public keys, or lie about who dropped to unmask a client; defending
needs signed keys from a PKI and the consistency-check round of Bonawitz et al., section 6), and
clients sending poisoned but well-formed inputs (secure aggregation hides inputs; it does not
vouch for them). The ring sum is only range-checked on decoding.
"""

from mfed.secure.keys import KeyPair, TamperedShare, kdf_context, open_sealed, seal, shared_key
from mfed.secure.masks import pairwise_mask, prg, ring_add, ring_neg, ring_sub, ring_sum
from mfed.secure.quantise import decode, encode, scale
from mfed.secure.shamir import Share, reconstruct, share

__all__ = [
    "KeyPair", "Share", "TamperedShare", "decode", "encode", "kdf_context", "open_sealed", "pairwise_mask", "prg",
    "reconstruct", "ring_add", "ring_neg", "ring_sub", "ring_sum", "scale", "seal", "share", "shared_key",
]  # fmt: skip
