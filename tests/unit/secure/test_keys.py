"""Key agreement and sealing: RFC 7748, RFC 5869 and RFC 8439 vectors through the API; tampering; contexts."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from mfed.secure.keys import (
    KeyPair,
    TamperedShare,
    kdf_context,
    open_sealed,
    seal,
    shared_key,
)

# RFC 7748, section 6.1
ALICE_PRIVATE = bytes.fromhex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
ALICE_PUBLIC = bytes.fromhex("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
BOB_PRIVATE = bytes.fromhex("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb")
BOB_PUBLIC = bytes.fromhex("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f")
SHARED_SECRET = bytes.fromhex("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742")

# RFC 8439, section 2.8.2: the AEAD ChaCha20-Poly1305
AEAD_KEY = bytes(range(0x80, 0xA0))
AEAD_NONCE = bytes.fromhex("070000004041424344454647")
AEAD_AAD = bytes.fromhex("50515253c0c1c2c3c4c5c6c7")
SUNSCREEN = (
    b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, "
    b"sunscreen would be it."
)
AEAD_CIPHERTEXT = bytes.fromhex(
    "d31a8d34648e60db7b86afbc53ef7ec2a4aded51296e08fea9e2b5a736ee62d6"
    "3dbea45e8ca9671282fafb69da92728b1a71de0a9e060b2905d6a5b67ecd3b36"
    "92ddbd7f2d778b8c9803aee328091b58fab324e4fad675945585808b4831d7bc"
    "3ff4def08e4b7a9de576d26586cec64b6116"
)
AEAD_TAG = bytes.fromhex("1ae10b594f09e26a7e902ecbd0600691")


def hkdf_sha256(ikm: bytes, info: bytes, length: int, salt: bytes = b"") -> bytes:
    """RFC 5869 from its text, on the standard library's HMAC: the reference the API is checked against."""
    prk = hmac.new(salt or bytes(32), ikm, hashlib.sha256).digest()
    out, block = b"", b""
    for i in range(1, -(-length // 32) + 1):
        block = hmac.new(prk, block + info + bytes([i]), hashlib.sha256).digest()
        out += block
    return out[:length]


def test_the_reference_hkdf_matches_rfc_5869_case_3():
    # RFC 5869, appendix A.3: SHA-256, 22 bytes of 0x0b, no salt, no info, L = 42
    okm = hkdf_sha256(bytes([0x0B] * 22), b"", 42)
    assert okm.hex() == "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8"


def test_rfc_7748_keys_and_shared_secret_through_the_api():
    # Prepare
    alice, bob = KeyPair.from_private(ALICE_PRIVATE), KeyPair.from_private(BOB_PRIVATE)
    context = kdf_context("test", 1)

    # Execute
    from_alice = shared_key(alice.private, bob.public, context)
    from_bob = bob.shared_key(alice.public, context)

    # Assert: the published public keys, and HKDF-SHA256 of the published shared secret on both sides
    assert alice.public == ALICE_PUBLIC and bob.public == BOB_PUBLIC
    assert from_alice == from_bob == hkdf_sha256(SHARED_SECRET, context, 32)


def test_both_sides_agree_and_each_context_and_pair_gets_its_own_key():
    # Prepare
    a, b, c = KeyPair.generate(), KeyPair.generate(), KeyPair.generate()
    mask, shares = kdf_context("pairwise-mask", 3, "encoder"), kdf_context("share-encryption", 3, "encoder")

    # Execute
    keys = {
        "ab mask": a.shared_key(b.public, mask),
        "ba mask": b.shared_key(a.public, mask),
        "ab shares": a.shared_key(b.public, shares),
        "ab next round": a.shared_key(b.public, kdf_context("pairwise-mask", 4, "encoder")),
        "ab other scope": a.shared_key(b.public, kdf_context("pairwise-mask", 3, "task:depth")),
        "ac mask": a.shared_key(c.public, mask),
    }

    # Assert
    assert keys["ab mask"] == keys["ba mask"] and len(keys["ab mask"]) == 32
    assert len(set(keys.values())) == len(keys) - 1


def test_contexts_are_unambiguous():
    # Prepare: pairs whose naive concatenations coincide
    pairs = [(("ab", "c"), ("a", "bc")), ((1,), ("1",)), ((12,), (1, 2)), (("x",), ("x", ""))]

    # Execute / Assert
    for first, second in pairs:
        assert kdf_context("mask", *first) != kdf_context("mask", *second)
    # the layout, written out by hand: domain, then (type, 4-byte length, body) per part
    assert kdf_context("mask", 3) == b"mfed-secagg/v1" + b"s\x00\x00\x00\x04mask" + b"i\x00\x00\x00\x013"
    with pytest.raises(TypeError, match="context fields are str or int, got bool"):
        kdf_context("mask", True)


def test_rfc_8439_aead_vector_opens_through_the_api():
    # Prepare: the published nonce, ciphertext and tag in the sealed layout nonce | ciphertext | tag
    sealed = AEAD_NONCE + AEAD_CIPHERTEXT + AEAD_TAG

    # Execute / Assert
    assert open_sealed(AEAD_KEY, sealed, AEAD_AAD) == SUNSCREEN


def test_sealing_round_trips_with_a_fresh_nonce_each_time():
    # Prepare
    key = KeyPair.generate().shared_key(KeyPair.generate().public, kdf_context("share-encryption", 0))

    # Execute
    first, second = seal(key, SUNSCREEN, b"from 1 to 2"), seal(key, SUNSCREEN, b"from 1 to 2")

    # Assert: 12-byte nonce + ciphertext + 16-byte tag; different nonces, same plaintext back
    assert len(first) == 12 + len(SUNSCREEN) + 16
    assert first[:12] != second[:12] and first != second
    assert open_sealed(key, first, b"from 1 to 2") == open_sealed(key, second, b"from 1 to 2") == SUNSCREEN


def test_a_tampered_share_wrong_key_or_wrong_associated_data_is_refused():
    # Prepare
    key, other = bytes(range(32)), bytes(range(1, 33))
    sealed = seal(key, b"a share", b"from 1 to 2")

    # Execute / Assert: a flipped bit anywhere (nonce, ciphertext, tag)
    for i in range(len(sealed)):
        for bit in (0x01, 0x80):
            altered = bytearray(sealed)
            altered[i] ^= bit
            with pytest.raises(TamperedShare, match="failed authentication"):
                open_sealed(key, bytes(altered), b"from 1 to 2")
    with pytest.raises(TamperedShare, match="failed authentication"):
        open_sealed(key, sealed, b"from 3 to 2")
    with pytest.raises(TamperedShare, match="failed authentication"):
        open_sealed(other, sealed, b"from 1 to 2")
    with pytest.raises(TamperedShare, match="failed authentication"):
        open_sealed(key, sealed[:-1], b"from 1 to 2")
    with pytest.raises(TamperedShare, match="at least 28 bytes, got 27"):
        open_sealed(key, sealed[:27], b"from 1 to 2")
    assert issubclass(TamperedShare, ValueError)


def test_key_pairs_keep_the_private_key_out_of_their_repr_and_check_it_matches():
    pair = KeyPair.generate()
    assert repr(pair) == f"KeyPair(public={pair.public!r})"
    assert "private" not in repr(pair) and repr(pair.private) not in repr(pair)
    assert KeyPair.from_private(pair.private) == pair
    with pytest.raises(ValueError, match="does not belong to the private key"):
        KeyPair(ALICE_PRIVATE, BOB_PUBLIC)


def test_bad_keys_and_contexts_are_refused():
    with pytest.raises(ValueError, match="low-order point"):
        shared_key(ALICE_PRIVATE, bytes(32), b"ctx")
    with pytest.raises(ValueError, match="a public key is 32 bytes, got 31"):
        shared_key(ALICE_PRIVATE, BOB_PUBLIC[:31], b"ctx")
    with pytest.raises(ValueError, match="a private key is bytes, got str"):
        shared_key("secret", BOB_PUBLIC, b"ctx")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="must name the key's use"):
        shared_key(ALICE_PRIVATE, BOB_PUBLIC, b"")
    with pytest.raises(ValueError, match="a sealing key is 32 bytes, got 16"):
        seal(bytes(16), b"x", b"")
