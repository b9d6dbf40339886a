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

The protocol and its place in a round:

- :mod:`mfed.secure.graph`: SecAgg+'s neighbour graph (a circulant graph on a random permutation)
  and the default degree and threshold.
- :mod:`mfed.secure.protocol`: one scope's round, the client's side (:class:`ClientScope`) and the
  server's (:class:`ServerScope`): advertise keys, share keys, masked input, unmasking; dropouts at
  any step; a clean abort when a secret cannot be recovered or a scope would sum one client.
- :mod:`mfed.secure.session`: a client's side of a secure round across its scopes (it encodes its
  routed change and keeps it, its keys and seeds where it trained).
- :mod:`mfed.secure.rounds`: the config group ``secure_aggregation`` and the driver's side of a
  round over every scope, giving the fold each scope's weighted mean.

With ``privacy=dp`` the clients clip their protected change jointly over every scope before
encoding it; the noise is added by the driver after unmasking (central) or by each client before
masking (``dp_noise: distributed``).

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
