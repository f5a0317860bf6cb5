"""Keys derived per purpose (HKDF), signing with rotation, and AES-GCM sealing at rest."""

from __future__ import annotations

import pytest

from gateway.crypto.derivation import derive_key, hkdf_sha256, key_id
from gateway.crypto.keys import Keys
from gateway.crypto.sealing import Sealer
from gateway.errors import SealError

OLD = "old-secret-key-0123456789-abcdefghijklmnop"
NEW = "new-secret-key-0123456789-abcdefghijklmnop"


@pytest.mark.parametrize(
    ("ikm", "salt", "info", "length", "okm"),
    [
        # RFC 5869 Appendix A, test cases 1 and 3 (SHA-256).
        (
            "0b" * 22,
            "000102030405060708090a0b0c",
            "f0f1f2f3f4f5f6f7f8f9",
            42,
            "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865",
        ),
        (
            "0b" * 22,
            "",
            "",
            42,
            "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8",
        ),
    ],
)
def test_hkdf_matches_the_rfc_5869_vectors(
    ikm: str, salt: str, info: str, length: int, okm: str
) -> None:
    derived = hkdf_sha256(
        bytes.fromhex(ikm), salt=bytes.fromhex(salt), info=bytes.fromhex(info), length=length
    )
    assert derived.hex() == okm


def test_a_derived_key_is_the_same_every_time_and_differs_by_purpose_and_secret() -> None:
    assert derive_key(NEW, "csrf") == derive_key(NEW, "csrf")
    assert derive_key(NEW, "csrf").material != derive_key(NEW, "at-rest").material
    assert derive_key(NEW, "csrf").material != derive_key(OLD, "csrf").material
    # The key is never the secret, and its id names it without revealing it.
    key = derive_key(NEW, "csrf")
    assert NEW.encode() not in key.material
    assert key.id == key_id(key.material) != key.material[: len(key.id)]
    assert key.material.hex() not in repr(key)


def test_keys_for_each_purpose_are_separate() -> None:
    keys = Keys.derive(NEW)
    assert len({keys.csrf.current.id, keys.names.current.id, keys.at_rest.current.id}) == 3
    assert keys.csrf.sign(b"m") != keys.names.sign(b"m")


@pytest.mark.parametrize("bad", [("", "csrf"), (NEW, ""), (NEW, "a\x00b")])
def test_a_key_needs_a_secret_and_a_purpose(bad: tuple[str, str]) -> None:
    with pytest.raises(ValueError, match=r"cannot derive|purpose"):
        derive_key(*bad)


def test_sealing_round_trips_and_names_the_current_key() -> None:
    sealer = Keys.derive(NEW).at_rest
    blob = sealer.seal(b"JBSWY3DPEHPK3PXP", b"totp:usr_1")
    assert b"JBSWY3DPEHPK3PXP" not in blob
    assert sealer.open(blob, b"totp:usr_1") == b"JBSWY3DPEHPK3PXP"
    assert sealer.key_id_of(blob) == derive_key(NEW, "at-rest").id
    assert sealer.is_current(blob)
    # A fresh nonce each time: the same secret never seals to the same bytes.
    assert sealer.seal(b"JBSWY3DPEHPK3PXP", b"totp:usr_1") != blob
    assert sealer.open(sealer.seal(b"", b""), b"") == b""


@pytest.mark.parametrize(
    ("position", "message"),
    [
        (0, "bad format"),  # the format byte
        (1, "sealed with key id"),  # the key id
        (9, "was altered"),  # the nonce
        (30, "was altered"),  # the ciphertext
        (-1, "was altered"),  # the tag
    ],
)
def test_a_flipped_bit_anywhere_is_detected(position: int, message: str) -> None:
    sealer = Keys.derive(NEW).at_rest
    blob = bytearray(sealer.seal(b"+61412345678", b"phone:usr_1"))
    blob[position] ^= 0x01
    with pytest.raises(SealError, match=message):
        sealer.open(bytes(blob), b"phone:usr_1")


def test_a_blob_does_not_open_for_other_associated_data() -> None:
    sealer = Keys.derive(NEW).at_rest
    blob = sealer.seal(b"+61412345678", b"phone:usr_1")
    with pytest.raises(SealError, match="belongs to another record"):
        sealer.open(blob, b"phone:usr_2")


@pytest.mark.parametrize("blob", [b"", b"\x01", b"\x02" + b"\x00" * 40, b"\x01" + b"\x00" * 30])
def test_what_is_not_a_sealed_value_is_refused_clearly(blob: bytes) -> None:
    with pytest.raises(SealError, match=r"not a sealed value|key id"):
        Keys.derive(NEW).at_rest.open(blob, b"")


def test_after_rotation_the_previous_key_still_opens_and_the_current_key_seals() -> None:
    before = Keys.derive(OLD).at_rest.seal(b"seed", b"totp:usr_1")
    rotated = Keys.derive(NEW, [OLD]).at_rest
    assert rotated.open(before, b"totp:usr_1") == b"seed"
    assert not rotated.is_current(before)
    after = rotated.seal(b"seed", b"totp:usr_1")
    assert rotated.is_current(after)
    assert rotated.key_id_of(after) == derive_key(NEW, "at-rest").id
    # The old configuration cannot open what the new key sealed.
    with pytest.raises(SealError, match="neither the current"):
        Keys.derive(OLD).at_rest.open(after, b"totp:usr_1")
    # And once the old key is dropped, its blobs name the missing key.
    with pytest.raises(SealError, match=derive_key(OLD, "at-rest").id_hex):
        Keys.derive(NEW).at_rest.open(before, b"totp:usr_1")


def test_keys_of_one_ring_must_serve_one_purpose() -> None:
    with pytest.raises(ValueError, match="same purpose"):
        Sealer(derive_key(NEW, "at-rest"), [derive_key(OLD, "csrf")])


def test_the_current_secret_listed_again_as_previous_is_harmless() -> None:
    keys = Keys.derive(NEW, [NEW, OLD, OLD])
    assert [k.id for k in keys.csrf.keys] == [
        derive_key(NEW, "csrf").id,
        derive_key(OLD, "csrf").id,
    ]
