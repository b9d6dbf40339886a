"""X25519 key agreement (RFC 7748), HKDF-SHA256 key derivation (RFC 5869) and sealed shares (RFC 8439).

Each client holds key pairs (:class:`KeyPair`) and advertises the public halves. Two clients
holding each other's public keys agree on a key with :func:`shared_key`: HKDF-SHA256 over the
X25519 shared secret, with ``info`` a *context* that names the use (purpose, round, scope, peer
ids...; :func:`kdf_context` writes it unambiguously), so one key pair yields independent keys
for every round, scope and purpose, and a seed expanded by :mod:`mfed.secure.masks` is never
reused. HKDF's salt is left empty (optional in RFC 5869 section 3.1: the extract step turns the
X25519 output into a pseudorandom key without one; the context is what separates uses).

A client's Shamir shares for another client travel through the server sealed with
:func:`seal`: ChaCha20-Poly1305 under the pair's agreed key, a fresh random 96-bit nonce
prepended, and *associated data* (e.g. sender, receiver, round, scope) authenticated but not
encrypted, so the server can neither read a share nor pass one off as another's.
:func:`open_sealed` raises :class:`TamperedShare` for anything that fails authentication. A
random 96-bit nonce is safe here because each agreed key seals a handful of messages (the
collision bound is ``q^2 / 2^97`` for ``q`` messages).

All primitives come from the ``cryptography`` package (OpenSSL); nothing here is hand-written.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

KEY_BYTES = 32  # X25519 private and public keys, derived keys, ChaCha20-Poly1305 keys
NONCE_BYTES = 12  # ChaCha20-Poly1305's nonce, prepended to each sealed message
TAG_BYTES = 16  # Poly1305's tag, appended by the AEAD
CONTEXT_DOMAIN = b"mfed-secagg/v1"  # kdf_context's prefix: keys derived here differ from any other use


class TamperedShare(ValueError):
    """A sealed share failed authentication.

    It was altered or truncated in transit, sealed under another key, or opened with other
    associated data than it was sealed with.
    """


@dataclass(frozen=True)
class KeyPair:
    """An X25519 key pair: the raw 32-byte private key (kept here, never printed) and public key.

    Args:
        private: The raw private key (RFC 7748's scalar ``k``, before clamping).
        public: ``X25519(k, 9)``, what the client advertises.

    Raises:
        ValueError: A key is not 32 bytes, or ``public`` is not the private key's public key.

    """

    private: bytes = field(repr=False)
    public: bytes

    def __post_init__(self) -> None:
        _check_key(self.private, "private key")
        _check_key(self.public, "public key")
        if _public_of(self.private) != self.public:
            raise ValueError("the public key does not belong to the private key")

    @classmethod
    def generate(cls) -> KeyPair:
        """A fresh key pair from the operating system's secure random source."""
        key = X25519PrivateKey.generate()
        private = key.private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
        )
        return cls(private, key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw))

    @classmethod
    def from_private(cls, private: bytes) -> KeyPair:
        """The key pair of a raw private key (e.g. one reconstructed from Shamir shares).

        Args:
            private: The raw 32-byte private key.

        Raises:
            ValueError: ``private`` is not 32 bytes.

        """
        _check_key(private, "private key")
        return cls(private, _public_of(private))

    def shared_key(self, their_public: bytes, context: bytes) -> bytes:
        """:func:`shared_key` with this pair's private key.

        Args:
            their_public: The other party's raw 32-byte public key.
            context: What the key is for (see :func:`kdf_context`); not empty.

        """
        return shared_key(self.private, their_public, context)


def shared_key(my_private: bytes, their_public: bytes, context: bytes) -> bytes:
    """A 32-byte key both parties derive: HKDF-SHA256(X25519(mine, theirs), salt=none, info=context).

    ``shared_key(a, B, c) == shared_key(b, A, c)`` for key pairs ``(a, A)`` and ``(b, B)``;
    different contexts give independent keys.

    Args:
        my_private: This party's raw 32-byte private key.
        their_public: The other party's raw 32-byte public key.
        context: What the key is for (purpose, round, scope...: see :func:`kdf_context`); not empty.

    Raises:
        ValueError: A key is not 32 bytes, the context is empty, or ``their_public`` is a
            low-order point (the shared secret would be all zeros, known to anyone).

    """
    _check_key(my_private, "private key")
    _check_key(their_public, "public key")
    if not context:
        raise ValueError("the key derivation context must name the key's use (see kdf_context), got b''")
    private = X25519PrivateKey.from_private_bytes(my_private)
    try:
        secret = private.exchange(X25519PublicKey.from_public_bytes(their_public))
    except ValueError:
        raise ValueError("their public key is a low-order point: the shared secret would be public") from None
    return HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None, info=context).derive(secret)


def kdf_context(purpose: str, *fields: str | int) -> bytes:
    """An unambiguous key derivation context: the domain, then each part length-prefixed and typed.

    ``kdf_context("mask", 3, "encoder")`` differs from any other purpose or fields, including
    ones whose plain concatenation would coincide (``("ab", "c")`` vs ``("a", "bc")``, ``1`` vs ``"1"``).

    Args:
        purpose: What the key is for, e.g. ``"share-encryption"`` or ``"pairwise-mask"``.
        *fields: What the key is bound to, e.g. the round, the aggregation scope, the two client ids.

    Raises:
        TypeError: A field is neither a str nor an int (or is a bool).

    """
    out = [CONTEXT_DOMAIN]
    for part in (purpose, *fields):
        if isinstance(part, bool) or not isinstance(part, str | int):
            raise TypeError(f"context fields are str or int, got {type(part).__name__}: {part!r}")
        tag, body = (b"s", part.encode()) if isinstance(part, str) else (b"i", str(part).encode())
        out.append(tag + len(body).to_bytes(4, "big") + body)
    return b"".join(out)


def seal(key: bytes, plaintext: bytes, associated: bytes) -> bytes:
    """Encrypt and authenticate ``plaintext`` for relay: ``nonce (12) | ciphertext | tag (16)``.

    Args:
        key: A 32-byte key agreed with :func:`shared_key`.
        plaintext: What to seal, e.g. :meth:`mfed.secure.shamir.Share.to_bytes`.
        associated: Data authenticated but not encrypted (sender, receiver, round, scope...):
            :func:`open_sealed` must be given the same bytes.

    Raises:
        ValueError: ``key`` is not 32 bytes.

    """
    _check_key(key, "sealing key")
    nonce = os.urandom(NONCE_BYTES)
    return nonce + ChaCha20Poly1305(key).encrypt(nonce, plaintext, associated)


def open_sealed(key: bytes, sealed: bytes, associated: bytes) -> bytes:
    """Authenticate and decrypt what :func:`seal` wrote.

    Args:
        key: The 32-byte key it was sealed under.
        sealed: ``nonce | ciphertext | tag``.
        associated: The associated data it was sealed with.

    Raises:
        TamperedShare: ``sealed`` is too short or fails authentication (altered, another key,
            other associated data).
        ValueError: ``key`` is not 32 bytes.

    """
    _check_key(key, "sealing key")
    if len(sealed) < NONCE_BYTES + TAG_BYTES:
        raise TamperedShare(f"a sealed share has at least {NONCE_BYTES + TAG_BYTES} bytes, got {len(sealed)}")
    try:
        return ChaCha20Poly1305(key).decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], associated)
    except InvalidTag:
        raise TamperedShare(
            "the sealed share failed authentication: altered in transit, sealed under another key, "
            "or opened with other associated data"
        ) from None


def _public_of(private: bytes) -> bytes:
    key = X25519PrivateKey.from_private_bytes(private).public_key()
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _check_key(key: bytes, what: str) -> None:
    if not isinstance(key, bytes):
        raise ValueError(f"a {what} is bytes, got {type(key).__name__}")
    if len(key) != KEY_BYTES:
        raise ValueError(f"a {what} is {KEY_BYTES} bytes, got {len(key)}")
